"""cache_hit_drop through the engine: pages when a caching key's hit ratio halves or collapses; quiet otherwise."""

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


def call(when: datetime, cached: int, *, key: str = "k1", session: str | None = None,
         tokens: int = 40_000) -> GatewayEvent:
    cost, _ = compute_cost("claude-sonnet-4-5", "anthropic", input_tokens=tokens, cache_read_tokens=cached,
                           output_tokens=800, at=when)
    return GatewayEvent(event_id=f"c{next(_ids)}", event_time=when, gateway="litellm", api_key_hash=key,
                        api_key_alias=f"{key}-agent", session_id=session, model="claude-sonnet-4-5",
                        provider="anthropic", input_tokens=tokens, cache_read_tokens=cached, output_tokens=800,
                        cost_usd=cost)


def wobble(n: int, spread: float) -> float:
    """A deterministic stand-in for noise in [-spread, spread]."""
    return spread * (((n * 7919) % 101) / 50 - 1)


def sessions(start: datetime, hours: float, per_hour: Callable[[datetime], float], ratio: Callable[[datetime], float],
             *, key: str = "k1", calls: Callable[[int], int] = lambda n: 6, spread: float = 0.1,
             tokens: int = 40_000) -> list[GatewayEvent]:
    """Sessions at ``per_hour(t)`` an hour: the first call writes the cache, the others read ``ratio(t)`` +- noise.

    The reads are scaled so that the session as a whole hits ``ratio`` (+- ``spread``) of its input tokens.
    """
    events, t, end, number = [], start, start + timedelta(hours=hours), 0
    while t < end:
        rate = per_hour(t)
        if rate <= 0:
            t += timedelta(hours=1)
            continue
        size = calls(number)
        target = min(0.95, max(0.0, ratio(t) + wobble(number, spread)))
        read = int(tokens * min(1.0, target * size / max(1, size - 1)))
        sid = f"{key}-{number}"
        events += [call(t + timedelta(minutes=2 * i, seconds=5), 0 if i == 0 else read, key=key, session=sid,
                        tokens=tokens) for i in range(size)]
        number += 1
        t += timedelta(hours=1 / rate)
    return events


def office(weekday: float, night: float = 0.5, weekend: float = 0.5) -> Callable[[datetime], float]:
    return lambda t: weekend if t.weekday() >= 5 else (weekday if 9 <= t.hour < 18 else night)


def cache_pages(events, config=None):
    alerts = run_backtest(sorted(events, key=lambda e: e.event_time), config or DetectorsConfig(),
                          drain=timedelta(hours=6))
    return [a for a in alerts if a.detector == "cache_hit_drop"]


def test_a_ratio_that_halves_pages_within_the_hour():
    broken = T0 + timedelta(days=2, hours=11)
    events = sessions(T0, 24 * 3, office(6), lambda t: 0.35 if broken <= t < broken + timedelta(hours=5) else 0.70)
    pages = cache_pages(events)
    assert [a.action.value for a in pages][:1] == ["trigger"] and pages[-1].action.value == "resolve"
    trigger = pages[0]
    assert timedelta(0) < trigger.fired_at - broken <= timedelta(hours=1)
    # expected: what the span's calls should have read, a session's first call (which writes the cache) included
    assert trigger.observed <= 0.6 * trigger.expected and 0.3 < trigger.expected < 0.75
    assert "prompt-cache hit ratio" in trigger.summary and "k1-agent" in trigger.summary


def test_a_collapse_holds_one_episode_overnight_and_resolves_once_fixed():
    broken = T0 + timedelta(days=2, hours=11)
    fixed = T0 + timedelta(days=3, hours=15)
    events = sessions(T0, 24 * 4, office(6), lambda t: 0.01 if broken <= t < fixed else 0.75, spread=0.01)
    pages = cache_pages(events)
    actions = [a.action.value for a in pages]  # one episode through the night: repeats, no re-trigger
    assert actions[0] == "trigger" and actions[-1] == "resolve" and set(actions[1:-1]) <= {"repeat"}
    assert len({a.dedup_key for a in pages}) == 1
    assert timedelta(0) < pages[0].fired_at - broken <= timedelta(minutes=30)
    assert fixed < pages[-1].fired_at < fixed + timedelta(hours=3)


def test_normal_variation_of_short_and_long_sessions_is_quiet():
    # sessions of 2 to 30 calls whose own ratios run from 45% to 95%, on a busy and on a sparse key, for a week
    busy = sessions(T0, 24 * 7, office(8, 1, 1), lambda t: 0.7, calls=lambda n: 2 + (n * 13) % 29, spread=0.25)
    sparse = sessions(T0, 24 * 7, lambda t: 0.5, lambda t: 0.7, key="sparse", calls=lambda n: 2 + n % 5,
                      spread=0.25)
    assert cache_pages(busy + sparse) == []


def test_a_moderate_dip_is_not_a_halving():
    dip = T0 + timedelta(days=2, hours=11)
    events = sessions(T0, 24 * 3, office(6), lambda t: 0.50 if t >= dip else 0.75)
    assert cache_pages(events) == []


def test_a_key_that_never_cached_cannot_drop():
    events = sessions(T0, 24 * 3, office(6), lambda t: 0.0 if t >= T0 + timedelta(days=2) else 0.1, spread=0.05)
    assert cache_pages(events) == []


def test_with_min_sessions_two_one_session_with_a_changed_prompt_is_not_the_keys_cache():
    broken = T0 + timedelta(days=2, hours=11)
    events = sessions(T0, 24 * 3, office(1), lambda t: 0.75)  # one session an hour in office hours
    events += [call(broken + timedelta(minutes=i), 0, session="the-odd-one", tokens=60_000) for i in range(40)]
    assert [a.action.value for a in cache_pages(events)][:1] == ["trigger"]  # by default: 40 calls of evidence
    two = DetectorsConfig.model_validate({"cache_hit_drop": {"min_sessions": 2}})
    assert cache_pages(events, two) == []


def test_a_sparse_key_halving_pages_once_it_has_the_evidence():
    # two sessions an hour: too few for 10 minutes, enough over two or three (min_session_spread's prior
    # asks for more than one halved session)
    broken = T0 + timedelta(days=3, hours=10)
    events = sessions(T0, 24 * 4, office(2, 0.3, 0.3), lambda t: 0.35 if t >= broken else 0.70, calls=lambda n: 8)
    pages = cache_pages(events)
    assert pages and pages[0].action.value == "trigger"
    assert timedelta(0) < pages[0].fired_at - broken <= timedelta(hours=2.5)


def test_the_money_floor_is_configurable():
    broken = T0 + timedelta(days=2, hours=11)
    events = sessions(T0, 24 * 3, office(6), lambda t: 0.35 if broken <= t < broken + timedelta(hours=3) else 0.70,
                      tokens=100)  # tiny prompts: a fraction of a cent an hour
    assert [a.action.value for a in cache_pages(events)][:1] == ["trigger"]  # no floor by default: any volume
    floor = DetectorsConfig.model_validate({"cache_hit_drop": {"min_wasted_usd": "0.01"}})
    assert cache_pages(events, floor) == []


def test_state_survives_a_snapshot_mid_drop():
    from spendwatch.detectors.engine import Engine

    engine = Engine(DetectorsConfig())
    state = engine.new_state("key:k1")
    broken = T0 + timedelta(days=2, hours=11)
    for e in sorted(sessions(T0, 24 * 2 + 11, office(6), lambda t: 0.7), key=lambda e: e.event_time):
        engine.process(state, e)
    state = engine.loads(engine.dumps(state))
    alerts = []
    for e in sorted(sessions(broken, 2, office(6), lambda t: 0.05, spread=0.02), key=lambda e: e.event_time):
        alerts += engine.process(state, e)
    assert [a.action.value for a in alerts if a.detector == "cache_hit_drop"][:1] == ["trigger"]


def test_a_sparse_key_whose_ratio_halves_pages_once_its_broken_sessions_add_up_however_far_apart():
    # five sessions a day, none at night, straying +-25%: one broken session is not evidence enough, and a 2-hour
    # window never holds more than one or two; the newest sessions of the day do add up
    broken = T0 + timedelta(days=3, hours=20)  # a Thursday evening: nothing to see until the morning
    events = sessions(T0, 24 * 6, office_hours(0.6), lambda t: 0.30 if t >= broken else 0.65, calls=lambda n: 3,
                      spread=0.25)
    pages = cache_pages(events)
    first_broken = min(e.event_time for e in events if e.event_time >= broken)
    assert pages and pages[0].action.value == "trigger"
    assert timedelta(0) <= pages[0].fired_at - first_broken <= timedelta(hours=8)


def test_an_ordinary_noisy_sparse_key_stays_quiet():
    # the same sparse key, its sessions straying +-20% around a 55% ratio for a fortnight: never a page
    events = sessions(T0, 24 * 14, office_hours(0.6), lambda t: 0.55, calls=lambda n: 2 + n % 3, spread=0.2)
    assert cache_pages(events) == []


def test_a_drop_that_has_not_paged_yet_is_not_learnt_as_normal():
    # a sparse key broken for days (too little money to page with a floor set) must still page once the floor is
    # lowered: the suspect stretches did not teach the baseline that a 30% ratio is normal
    from spendwatch.detectors.cache_hit_drop import CacheHitDrop
    from spendwatch.detectors.config import BaselineConfig, CacheHitDropConfig

    detector = CacheHitDrop(CacheHitDropConfig(), BaselineConfig(), "key", "k1")
    broken = T0 + timedelta(days=4)
    for e in sessions(T0, 24 * 8, office(1, 0.2, 0.2), lambda t: 0.3 if t >= broken else 0.65, spread=0.05):
        detector._roll(e.event_time.timestamp())
        from spendwatch.detectors.engine import observe
        detector.learn_one(observe(e), None)  # type: ignore[arg-type]
    assert detector._ratios()[1] > 0.55


def test_one_halved_session_on_a_key_whose_past_was_uniform_is_not_yet_a_drop():
    # a history with no straying at all learns a spread near zero; min_session_spread keeps one odd session
    # (a new prompt, a tool result) from paging alone -- a second one in the same state does
    odd = T0 + timedelta(days=3, hours=10)
    events = sessions(T0, 24 * 3 + 10, office(1), lambda t: 0.70, spread=0.0)
    events += [call(odd + timedelta(minutes=2 * i, seconds=5), 0 if i == 0 else 16_000, session="odd-1")
               for i in range(6)]
    assert cache_pages(events) == []
    no_prior = DetectorsConfig.model_validate({"cache_hit_drop": {"min_session_spread": 0}})
    assert [a.action.value for a in cache_pages(events, no_prior)][:1] == ["trigger"]
    events += [call(odd + timedelta(minutes=20 + 2 * i, seconds=5), 0 if i == 0 else 16_000, session="odd-2")
               for i in range(6)]
    assert [a.action.value for a in cache_pages(events)][:1] == ["trigger"]


def test_a_key_with_one_session_a_day_learns_enough_to_page():
    # one short session a day (a decayed count of about five at a 72-hour half-life): its straying is known from
    # those few sessions, the min_session_spread prior standing in for the rest, and its collapse pages in the
    # first broken session
    broken = T0 + timedelta(days=10, hours=10)
    once = lambda t: 1.0 if t.hour == 10 else 0.0  # noqa: E731
    events = sessions(T0, 24 * 14, once, lambda t: 0.05 if t >= broken else 0.6, calls=lambda n: 4, spread=0.1)
    pages = cache_pages(events)
    assert pages and pages[0].action.value == "trigger"
    assert broken <= pages[0].fired_at <= broken + timedelta(minutes=10)


def test_a_key_with_one_session_a_day_and_an_ordinary_spread_stays_quiet():
    once = lambda t: 1.0 if t.hour == 10 else 0.0  # noqa: E731
    events = sessions(T0, 24 * 14, once, lambda t: 0.55, calls=lambda n: 2 + n % 4, spread=0.2)
    assert cache_pages(events) == []


def test_lost_hits_are_billed_at_the_input_price_less_the_models_cache_read_price():
    # gpt-4o bills a cache read at half its input price (claude-sonnet-4-5 at a tenth): a lost hit costs the other
    # half, not 90% of the input price
    broken = T0 + timedelta(days=2, hours=11)
    events = []
    for e in sessions(T0, 24 * 3, office(6), lambda t: 0.30 if t >= broken else 0.70, tokens=200_000):
        cost, _ = compute_cost("gpt-4o", "openai", input_tokens=e.input_tokens, cache_read_tokens=e.cache_read_tokens,
                               output_tokens=800, at=e.event_time)
        events.append(e.model_copy(update={"model": "gpt-4o", "provider": "openai", "cost_usd": cost}))
    trigger = next(a for a in cache_pages(events) if a.action.value == "trigger")
    lost = trigger.expected * trigger.details["window_input_tokens"] - trigger.details["window_cache_read_tokens"]
    assert lost > 5e4  # ten cents or more: the rounding to cents stays within 5%
    assert trigger.details["estimated_extra_usd"] == pytest.approx(lost * 1.25e-6, rel=0.05)
