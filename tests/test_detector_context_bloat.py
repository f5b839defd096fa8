"""context_bloat through the engine: requests growing several-fold model for model; quiet on ordinary mixes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from detector_kit import office_hours

from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.pricing import compute_cost

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
_ids = count()
PROVIDERS = {"claude": "anthropic", "gpt": "openai"}


def call(when: datetime, tokens: int, *, key: str = "k1", session: str | None = None,
         model: str = "claude-sonnet-4-5", cached: float = 0.0) -> GatewayEvent:
    provider = next(p for prefix, p in PROVIDERS.items() if model.startswith(prefix))
    reads = int(tokens * cached)
    cost, _ = compute_cost(model, provider, input_tokens=tokens, cache_read_tokens=reads, output_tokens=500, at=when)
    return GatewayEvent(event_id=f"b{next(_ids)}", event_time=when, gateway="litellm", api_key_hash=key,
                        api_key_alias=f"{key}-agent", session_id=session, model=model, provider=provider,
                        input_tokens=tokens, cache_read_tokens=reads, output_tokens=500, cost_usd=cost)


def wobble(n: int) -> float:
    """A deterministic stand-in for a log-uniform size factor in [0.5, 2]."""
    return 2 ** (((n * 7919) % 101) / 50 - 1)


def sessions(start: datetime, hours: float, per_hour: Callable[[datetime], float], *, key: str = "k1",
             growth: Callable[[datetime], float] = lambda t: 1.0, calls: Callable[[int], int] = lambda n: 8,
             model: Callable[[int], str] = lambda n: "claude-sonnet-4-5", context: int = 12_000,
             step: int = 1_500, cached: float = 0.0) -> list[GatewayEvent]:
    """Sessions whose context starts at ``context`` x noise and grows ``step`` a call, x ``growth(t)``."""
    events, t, end, number = [], start, start + timedelta(hours=hours), 0
    while t < end:
        rate = per_hour(t)
        if rate <= 0:
            t += timedelta(hours=1)
            continue
        size, first = context * wobble(number), t
        for i in range(calls(number)):
            when = first + timedelta(minutes=2 * i, seconds=3)
            events.append(call(when, int((size + step * i) * growth(when)), key=key, session=f"{key}-{number}",
                               model=model(number), cached=cached))
        number += 1
        t += timedelta(hours=1 / rate)
    return sorted(events, key=lambda e: e.event_time)


def office(weekday: float, night: float = 0.5, weekend: float = 0.5) -> Callable[[datetime], float]:
    return lambda t: weekend if t.weekday() >= 5 else (weekday if 9 <= t.hour < 18 else night)


def bloat_pages(events, config=None):
    alerts = run_backtest(sorted(events, key=lambda e: e.event_time), config or DetectorsConfig(),
                          drain=timedelta(hours=6))
    return [a for a in alerts if a.detector == "context_bloat"]


@pytest.mark.parametrize("factor", [4.0, 8.0])
def test_steady_several_fold_input_growth_pages_within_the_hour(factor):
    grows = T0 + timedelta(days=3, hours=10)
    ends = grows + timedelta(hours=6)
    events = sessions(T0, 24 * 4, office(6), growth=lambda t: factor if grows <= t < ends else 1.0)
    pages = bloat_pages(events)
    assert [a.action.value for a in pages][:1] == ["trigger"] and pages[-1].action.value == "resolve"
    trigger = pages[0]
    assert timedelta(0) < trigger.fired_at - grows <= timedelta(hours=1)
    assert trigger.observed >= 2.0 and "input tokens usual for their model" in trigger.summary
    assert trigger.labels["key_alias"] == "k1-agent"
    assert ends < pages[-1].fired_at < ends + timedelta(hours=4)


def test_a_normal_mix_of_short_and_long_prompts_and_sessions_is_quiet():
    # sizes over a 4x range, sessions of 1 to 60 calls (so some contexts grow very long), for a week
    mixed = sessions(T0, 24 * 7, office(8, 1, 1), calls=lambda n: 1 + (n * 37) % 60)
    sparse = sessions(T0, 24 * 7, lambda t: 0.4, key="sparse", calls=lambda n: 1 + n % 9, step=3_000)
    assert bloat_pages(mixed + sparse) == []


def test_one_long_session_is_not_bloat():
    long_one = T0 + timedelta(days=3, hours=10)
    events = sessions(T0, 24 * 4, office(2))
    events += [call(long_one + timedelta(minutes=i), 12_000 + 4_000 * i, session="marathon") for i in range(60)]
    assert bloat_pages(events) == []


def test_a_move_to_a_pricier_model_is_mix_drift_not_bloat():
    switch = T0 + timedelta(days=3, hours=10)
    events = sessions(T0, 24 * 4, office(6),
                      model=lambda n: "claude-opus-4-1" if n > 200 else "claude-haiku-4-5")
    assert any(e.model == "claude-opus-4-1" and e.event_time < switch + timedelta(hours=12) for e in events)
    usd = DetectorsConfig.model_validate({"context_bloat": {"metric": "usd"}})
    assert bloat_pages(events) == [] and bloat_pages(events, usd) == []


def test_the_dollar_floor_is_configurable():
    grows = T0 + timedelta(days=3, hours=10)
    events = sessions(T0, 24 * 4, office(6), context=50, step=2, model=lambda n: "claude-haiku-4-5",
                      growth=lambda t: 5.0 if t >= grows else 1.0)  # tiny prompts: fractions of a cent
    assert [a.action.value for a in bloat_pages(events)][:1] == ["trigger"]  # no floor by default: any volume
    floor = DetectorsConfig.model_validate({"context_bloat": {"min_extra_usd": "0.05"}})
    assert bloat_pages(events, floor) == []


def uniform_sessions(start: datetime, count_: int, *, every_minutes: float = 30, calls: int = 4,
                     size: int = 12_000, key: str = "k1", name: str = "u") -> list[GatewayEvent]:
    """Sessions of ``calls`` calls whose prompts are always the same size: a key whose past never strayed."""
    return [call(start + timedelta(minutes=every_minutes * n + 2 * i, seconds=3), size, key=key,
                 session=f"{key}-{name}{n}") for n in range(count_) for i in range(calls)]


def test_a_few_somewhat_larger_sessions_on_a_key_whose_past_was_uniform_are_not_yet_bloat():
    # a history with no straying at all learns a spread near zero; min_session_spread keeps three sessions a
    # little over twice the usual size (a new tool, a longer document) from paging as bloat on their own
    odd = T0 + timedelta(days=3, hours=10)
    events = uniform_sessions(T0, 3 * 48 + 20)
    events += uniform_sessions(odd, 3, size=int(12_000 * 2.2), name="odd")
    assert bloat_pages(events) == []
    no_prior = DetectorsConfig.model_validate({"context_bloat": {"min_session_spread": 0}})
    assert [a.action.value for a in bloat_pages(events, no_prior)][:1] == ["trigger"]


def test_extra_spend_prices_cache_reads_at_the_cache_read_price():
    # the same bloat on a key whose prompts are 90% cache reads (billed at a tenth of the input price) costs about
    # a fifth as much: the extra spend says so, and a dollar floor between the two figures keeps only the uncached
    grows = T0 + timedelta(days=3, hours=10)
    extra = {}
    for cached in (0.0, 0.9):
        events = sessions(T0, 24 * 4, office(6), cached=cached, growth=lambda t: 4.0 if t >= grows else 1.0)
        trigger = next(a for a in bloat_pages(events) if a.action.value == "trigger")
        extra[cached] = trigger.details["estimated_extra_usd"]
    assert 0.15 < extra[0.9] / extra[0.0] < 0.25
    floor = (extra[0.0] + extra[0.9]) / 2
    config = DetectorsConfig.model_validate({"context_bloat": {"min_extra_usd": str(floor)}})
    cached_events = sessions(T0, 24 * 4, office(6), cached=0.9, growth=lambda t: 4.0 if t >= grows else 1.0)
    assert all(a.fired_at > grows + timedelta(minutes=30) for a in bloat_pages(cached_events, config))


def test_config_refuses_a_normal_factor_above_the_page_factor():
    with pytest.raises(ValueError, match="normal_factor"):
        DetectorsConfig.model_validate({"context_bloat": {"min_factor": 2, "normal_factor": 3}})


def test_state_survives_a_snapshot_mid_bloat():
    from spendwatch.detectors.engine import Engine

    engine = Engine(DetectorsConfig())
    state = engine.new_state("key:k1")
    grows = T0 + timedelta(days=3, hours=10)
    for e in sessions(T0, 24 * 3 + 10, office(6)):
        engine.process(state, e)
    state = engine.loads(engine.dumps(state))
    alerts = []
    for e in sessions(grows, 2, office(6), growth=lambda t: 6.0):
        alerts += engine.process(state, e)
    assert [a.action.value for a in alerts if a.detector == "context_bloat"][:1] == ["trigger"]


def test_a_quiet_key_holds_an_episode_for_a_day_at_most():
    # bloat pages, then the key falls almost silent (one call every three hours, never enough to judge):
    # the episode holds through the quiet, but not forever (its baseline would never learn again)
    grows = T0 + timedelta(days=3, hours=10)
    quiet = grows + timedelta(hours=2)
    events = sessions(T0, 24 * 3 + 10, office(6))
    events += sessions(grows, 2, office(6), growth=lambda t: 6.0)
    events += [call(quiet + timedelta(hours=3 * i), 12_000, session=f"lone-{i}") for i in range(24)]
    pages = bloat_pages(events)
    assert [a.action.value for a in pages][:1] == ["trigger"]
    resolved = [a.fired_at for a in pages if a.action.value == "resolve"]
    assert resolved and quiet + timedelta(hours=12) < resolved[0] < quiet + timedelta(hours=27)


def test_bloat_on_a_sparse_key_pages_on_its_first_bloated_sessions_however_far_apart():
    # eight sessions a day, office hours only, three models: no model has twenty requests at a position of its
    # own, and a 2-hour window holds two sessions at most; bloat starting overnight pages in the morning
    grows = T0 + timedelta(days=7, hours=20)  # a Monday evening
    models = ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4o")
    events = sessions(T0, 24 * 10, office_hours(1.0), calls=lambda n: 4, model=lambda n: models[n % 3],
                      growth=lambda t: 5.0 if t >= grows else 1.0)
    pages = bloat_pages(events)
    first_grown = min(e.event_time for e in events if e.event_time >= grows)
    assert pages and pages[0].action.value == "trigger"
    assert timedelta(0) <= pages[0].fired_at - first_grown <= timedelta(hours=6)


def test_bloat_on_a_key_with_one_session_a_day_pages_on_its_second_grown_session():
    # one five-call session a day: no call position ever holds twenty requests (about five, decayed), nor the
    # baseline ten sessions; the key's own few requests are its usual, the min_session_spread prior its straying
    grows = T0 + timedelta(days=10, hours=9)
    once = lambda t: 1.0 if t.hour == 10 else 0.0  # noqa: E731
    events = sessions(T0, 24 * 14, once, calls=lambda n: 5, growth=lambda t: 5.0 if t >= grows else 1.0)
    pages = bloat_pages(events)
    second = grows + timedelta(days=1, hours=1)  # the second grown session starts then
    assert pages and pages[0].action.value == "trigger"
    assert second <= pages[0].fired_at <= second + timedelta(minutes=10)


def test_a_key_with_one_session_a_day_and_an_ordinary_spread_of_sizes_stays_quiet():
    once = lambda t: 1.0 if t.hour == 10 else 0.0  # noqa: E731
    assert bloat_pages(sessions(T0, 24 * 14, once, calls=lambda n: 1 + n % 6)) == []


def test_two_grown_sessions_are_the_evidence_the_second_pages():
    # sessions every half hour, their prompts 5x from 10:00: the first grown session is left out (one large
    # session is never bloat), the second, beyond the key's straying, pages -- before a third begins
    grows = T0 + timedelta(days=3, hours=10)
    events = sessions(T0, 24 * 4, lambda t: 2.0, growth=lambda t: 5.0 if t >= grows else 1.0)
    pages = bloat_pages(events)
    assert pages and pages[0].action.value == "trigger"
    assert grows + timedelta(minutes=30) <= pages[0].fired_at < grows + timedelta(minutes=60)
    assert pages[0].details["sessions"] == 2


def test_a_sparse_key_with_an_ordinary_spread_of_prompt_sizes_stays_quiet():
    models = ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4o")
    events = sessions(T0, 24 * 14, office_hours(0.5), calls=lambda n: 1 + n % 6, model=lambda n: models[n % 3])
    assert bloat_pages(events) == []


#: The single-session evidence (off by default) switched on.
SINGLE = DetectorsConfig.model_validate({"context_bloat": {"single_session_requests": 4}})


def steady_sessions(start: datetime, hours: float, every_hours: float, *, calls: int = 12, key: str = "k1",
                    growth: Callable[[datetime], float] = lambda t: 1.0, name: str = "s") -> list[GatewayEvent]:
    """Sessions of ``calls`` calls every ``every_hours``, their prompts within +-10% of 12k, growing 1.5k a call."""
    events, n = [], 0
    while (first := start + timedelta(hours=every_hours * n)) < start + timedelta(hours=hours):
        size = 12_000 * (1 + 0.1 * (((n * 7919) % 101) / 50 - 1))
        for i in range(calls):
            when = first + timedelta(minutes=2 * i, seconds=3)
            events.append(call(when, int((size + 1_500 * i) * growth(when)), key=key, session=f"{key}-{name}{n}"))
        n += 1
    return events


def test_one_session_grown_several_fold_over_many_calls_pages_on_a_key_whose_sessions_stray_little():
    # a session every four hours, prompts within +-10%: the first session whose calls all carry 6x their usual
    # context is overwhelming evidence by its fourth grown call, hours before the second grown session
    grows = T0 + timedelta(days=5, hours=1)
    events = steady_sessions(T0, 24 * 7, 4, growth=lambda t: 6.0 if t >= grows else 1.0)
    first = min(e.event_time for e in events if e.event_time >= grows)
    pages = bloat_pages(events, SINGLE)
    assert pages and pages[0].action.value == "trigger"
    assert first + timedelta(minutes=5) <= pages[0].fired_at <= first + timedelta(minutes=7)
    assert pages[0].details["sessions"] == 1 and pages[0].observed > 4
    # without the single-session evidence (the default) the same incident waits for its second grown session
    assert bloat_pages(events)[0].fired_at >= first + timedelta(hours=4)


def test_one_grown_session_on_a_key_whose_sessions_stray_widely_is_not_evidence_on_its_own():
    # a 4x session on a key whose prompts range over 4x (a spread of about 0.4 in log-size): one draw that far out
    # is not improbable enough, it waits for a second grown session
    grows = T0 + timedelta(days=5, hours=1)
    events = sessions(T0, 24 * 7, lambda t: 0.25, calls=lambda n: 12, growth=lambda t: 4.0 if t >= grows else 1.0)
    first = min(e.event_time for e in events if e.event_time >= grows)
    pages = bloat_pages(events, SINGLE)
    assert pages and pages[0].fired_at >= first + timedelta(hours=4) and pages[0].details["sessions"] >= 2


def test_one_short_grown_session_is_not_evidence_on_its_own():
    # three grown calls are fewer than single_session_requests: however far they grew, the second session decides
    grows = T0 + timedelta(days=5, hours=1)
    events = steady_sessions(T0, 24 * 7, 4, calls=3, growth=lambda t: 6.0 if t >= grows else 1.0)
    first = min(e.event_time for e in events if e.event_time >= grows)
    pages = bloat_pages(events, SINGLE)
    assert pages and pages[0].fired_at >= first + timedelta(hours=4)


def test_a_long_ordinary_session_on_a_key_whose_sessions_stray_little_is_not_bloat():
    # a 60-call session on the steady key: its late calls are compared with the usual size of late calls (or not
    # at all where none is known), never with the key's first calls
    long_one = T0 + timedelta(days=5, hours=1)
    events = steady_sessions(T0, 24 * 7, 4) + steady_sessions(long_one + timedelta(minutes=30), 1, 2, calls=60,
                                                               name="long")
    assert bloat_pages(events, SINGLE) == []


def test_one_big_session_on_a_model_the_key_seldom_uses_is_not_evidence_on_its_own():
    # a burst on a frontier model with eight times the key's usual context (session_burn's business): that model has
    # no usual size of its own, and the pooled usual of the key's other model does not describe its workload
    burst = T0 + timedelta(days=5, hours=1, minutes=30)
    events = steady_sessions(T0, 24 * 7, 4)
    events += [call(burst + timedelta(seconds=20 * i), 100_000 + 2_000 * i, session="burst", model="claude-opus-4-1")
               for i in range(40)]
    assert bloat_pages(events, SINGLE) == []
    # the same burst on the key's own model is compared with that model's usual: it is grown, and pages
    same_model = [e.model_copy(update={"model": "claude-sonnet-4-5"}) if e.session_id == "burst" else e
                  for e in events]
    assert [a.action.value for a in bloat_pages(same_model, SINGLE)][:1] == ["trigger"]


def test_a_snapshot_from_before_the_grown_request_count_loads_with_its_baseline_and_no_recent_sessions():
    from spendwatch.detectors.config import BaselineConfig, ContextBloatConfig
    from spendwatch.detectors.context_bloat import ContextBloat
    from spendwatch.detectors.engine import Engine

    engine = Engine(DetectorsConfig())
    state = engine.new_state("key:k1")
    for e in steady_sessions(T0, 24 * 3, 4):
        engine.process(state, e)
    bloat = next(d for d in state.detectors.values() if isinstance(d, ContextBloat))
    old = bloat.__getstate__()
    old["recent"] = {name: sums[:3] + sums[4:] for name, sums in old["recent"].items()}  # 3 sums, then 2 times
    assert old["recent"]
    restored = ContextBloat.__new__(ContextBloat)
    restored.__setstate__(old)
    restored.bind(ContextBloatConfig(), BaselineConfig())
    assert restored.recent == {} and restored.baseline.get("sessions") == bloat.baseline.get("sessions") > 0
