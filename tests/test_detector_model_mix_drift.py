"""model_mix_drift through the engine: sessions (not requests) moving to an expensive model, for a key or a team."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.pricing import TierThresholds, compute_cost

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
_ids = count()
PROVIDERS = {"claude": "anthropic", "gpt": "openai", "o3": "openai", "gemini": "google"}


def call(when: datetime, model: str, *, key: str = "k1", session: str | None = None, team: str = "ml",
         tokens: int = 8_000, output: int = 600) -> GatewayEvent:
    provider = next(p for prefix, p in PROVIDERS.items() if model.startswith(prefix))
    cost, _ = compute_cost(model, provider, input_tokens=tokens, output_tokens=output, at=when)
    return GatewayEvent(event_id=f"m{next(_ids)}", event_time=when, gateway="litellm", api_key_hash=key,
                        api_key_alias=f"{key}-alias", team=team, session_id=session, model=model, provider=provider,
                        input_tokens=tokens, output_tokens=output, cost_usd=cost)


def sessions(start: datetime, hours: float, per_hour: Callable[[datetime], float],
             model_of: Callable[[int], str], *, key: str = "k1", calls: int = 8, **kw) -> list[GatewayEvent]:
    """Sessions opened evenly at ``per_hour(t)`` an hour, each ``calls`` requests a minute apart on one model."""
    events, t, end = [], start, start + timedelta(hours=hours)
    number = 0
    while t < end:
        rate = per_hour(t)
        if rate <= 0:
            t += timedelta(hours=1)
            continue
        model = model_of(number)
        sid = f"{key}-{t.isoformat()}"
        events += [call(t + timedelta(minutes=i, seconds=7), model, key=key, session=sid, **kw) for i in range(calls)]
        number += 1
        t += timedelta(hours=1 / rate)
    return events


def office(weekday: float, night: float = 1, weekend: float = 1) -> Callable[[datetime], float]:
    return lambda t: weekend if t.weekday() >= 5 else (weekday if 9 <= t.hour < 18 else night)


def habit(share: float, rare: str = "claude-opus-4-1", usual: str = "claude-sonnet-4-5",
          phase: int = 0) -> Callable[[int], str]:
    """Every 1/share-th session on ``rare`` (deterministic), the rest on ``usual``."""
    period = round(1 / share)
    return lambda n: rare if (n + phase) % period == period // 2 else usual


def by_time(events: list[GatewayEvent]) -> list[GatewayEvent]:
    return sorted(events, key=lambda e: e.event_time)


def drift_pages(events, config=None):
    alerts = run_backtest(by_time(events), config or DetectorsConfig(), drain=timedelta(hours=6))
    return [a for a in alerts if a.detector == "model_mix_drift"]


def test_a_five_percent_habit_moving_to_85_percent_of_sessions_pages_within_the_hour():
    switch = T0 + timedelta(days=3, hours=10)
    events = sessions(T0, 24 * 3 + 10, office(6, 1), habit(0.05))
    events += sessions(switch, 6, office(6, 1), habit(0.15, rare="claude-sonnet-4-5", usual="claude-opus-4-1"))
    events += sessions(switch + timedelta(hours=6), 14, office(6, 1), habit(0.05))
    pages = [a for a in drift_pages(events) if a.scope == "key"]
    assert [a.action.value for a in pages][0] == "trigger" and pages[-1].action.value == "resolve"
    trigger = pages[0]
    assert timedelta(0) < trigger.fired_at - switch <= timedelta(hours=1)
    assert "claude-opus-4-1 (frontier)" in trigger.summary and trigger.subject == "k1"
    assert trigger.details["level"] == "model" and trigger.details["baseline_share"] < 0.1
    assert trigger.details["drifted_sessions"] >= 3
    assert trigger.labels["key_alias"] == "k1-alias"
    assert pages[-1].fired_at < switch + timedelta(hours=6 + 14)  # the drift ended: the episode resolves


def test_one_frontier_session_on_a_sparse_key_is_not_drift_however_many_calls():
    # a low-volume key: two sessions on a weekday, on sonnet; then one 300-call opus session worth ~$40
    events = sessions(T0, 24 * 9, lambda t: 1 / 6 if t.weekday() < 5 and 9 <= t.hour < 21 else 0,
                      lambda _: "claude-sonnet-4-5")
    burn = T0 + timedelta(days=9, hours=14)
    events += [call(burn + timedelta(seconds=8 * i), "claude-opus-4-1", session="one-big-session")
               for i in range(300)]
    assert drift_pages(events) == []


def test_a_key_that_often_uses_the_model_needs_more_than_a_short_run_of_it():
    # 40% of this key's sessions are on opus: four opus sessions in a row is ordinary
    events = sessions(T0, 24 * 3 + 10, office(6, 1), habit(0.4, rare="claude-sonnet-4-5", usual="claude-opus-4-1"))
    run_start = T0 + timedelta(days=3, hours=10)
    events += sessions(run_start, 4 / 6, office(6, 1), lambda _: "claude-opus-4-1")
    events += sessions(run_start + timedelta(hours=4 / 6), 10, office(6, 1),
                       habit(0.4, rare="claude-sonnet-4-5", usual="claude-opus-4-1"))
    assert drift_pages(events) == []


def test_team_wide_drift_pages_the_team_sooner_than_its_sparse_keys():
    keys = [f"t{i}" for i in range(5)]
    switch = T0 + timedelta(days=3, hours=10)
    events = []
    for i, key in enumerate(keys):  # five sparse keys, 1.5 sessions an hour each in office hours
        events += sessions(T0 + timedelta(minutes=7 * i), 24 * 3 + 10, office(1.5, 0.2), habit(0.05, phase=4 * i), key=key,
                           team="search")
        events += sessions(switch + timedelta(minutes=7 * i), 4, office(1.5, 0.2),
                           habit(0.15, rare="claude-sonnet-4-5", usual="claude-opus-4-1"), key=key, team="search")
    pages = drift_pages(events)
    team = [a for a in pages if a.scope == "team" and a.action.value == "trigger"]
    assert team and team[0].subject == "search"
    assert timedelta(0) < team[0].fired_at - switch <= timedelta(hours=1)
    key_triggers = [a.fired_at for a in pages if a.scope == "key" and a.action.value == "trigger"]
    assert all(team[0].fired_at <= t for t in key_triggers)


def test_a_team_is_judged_key_by_key_so_which_key_is_awake_is_not_drift():
    # the frontier-heavy key works nights, the sonnet key days: the team's mix swings every 12 h
    night_owl = sessions(T0, 24 * 5, lambda t: 3 if not 8 <= t.hour < 20 else 0.2,
                         habit(0.1, rare="claude-sonnet-4-5", usual="claude-opus-4-1"), key="owl", team="search")
    day_key = sessions(T0, 24 * 5, lambda t: 3 if 8 <= t.hour < 20 else 0.2, habit(0.05), key="lark",
                       team="search")
    assert drift_pages(night_owl + day_key) == []


def test_tier_drift_pages_when_no_single_model_dominates():
    switch = T0 + timedelta(days=2, hours=10)
    events = sessions(T0, 24 * 2 + 10, office(6, 1), lambda _: "gpt-5-mini")
    frontier = ("claude-sonnet-4-5", "o3", "gpt-4.1")
    events += sessions(switch, 3, office(6, 1), lambda n: frontier[n % 3])
    pages = [a for a in drift_pages(events) if a.scope == "key"]
    assert pages and pages[0].details["level"] == "tier" and pages[0].details["drifted"] == "frontier"
    assert "frontier-tier models" in pages[0].summary


def test_tiers_follow_the_configured_price_thresholds_not_a_model_list():
    switch = T0 + timedelta(days=2, hours=10)
    events = sessions(T0, 24 * 2 + 10, office(6, 1), lambda _: "claude-haiku-4-5")
    events += sessions(switch, 3, office(6, 1), lambda _: "claude-opus-4-1")
    config = DetectorsConfig.model_validate(
        {"model_mix_drift": {"tiers": TierThresholds(frontier_min_input_per_mtok=Decimal(20)).model_dump()}})
    [trigger, *_] = drift_pages(events, config)
    assert "claude-opus-4-1 (standard)" in trigger.summary


def test_a_move_to_cheaper_models_is_not_a_page():
    switch = T0 + timedelta(days=2, hours=10)
    events = sessions(T0, 24 * 2 + 10, office(6, 1), lambda _: "claude-sonnet-4-5")
    events += sessions(switch, 8, office(6, 1), lambda _: "gpt-5-mini")
    assert drift_pages(events) == []


def test_the_dollar_floor_is_configurable():
    switch = T0 + timedelta(days=2, hours=10)
    events = sessions(T0, 24 * 2 + 10, office(6, 1), lambda _: "gpt-5-mini", tokens=100, output=10)
    events += sessions(switch, 0.5, office(6, 1), lambda _: "claude-opus-4-1", tokens=100, output=10)  # ~5 cents
    assert drift_pages(events) == []
    cheap = DetectorsConfig.model_validate({"model_mix_drift": {"min_drift_spend_usd": "0.01"}})
    assert [a.action.value for a in drift_pages(events, cheap)][:1] == ["trigger"]


def test_ordinary_life_is_quiet_seasonality_growth_new_and_sparse_keys():
    week = 24 * 7
    seasonal = sessions(T0, week, office(6, 0.5, 0), habit(0.05), key="seasonal", team="a")
    growing = sessions(T0, week, lambda t: 2 * (1 + (t - T0) / timedelta(days=7)), habit(0.1), key="growing",
                       team="b")
    new_key = sessions(T0 + timedelta(days=4, hours=9), 30, office(4, 1), lambda _: "claude-opus-4-1", key="new",
                       team="b")
    sparse = sessions(T0, week, lambda t: 1 / 12, lambda n: "claude-opus-4-1" if n % 2 else "claude-sonnet-4-5",
                      key="sparse", team="c")
    assert drift_pages(seasonal + growing + new_key + sparse) == []


def test_state_survives_a_snapshot_mid_drift():
    from spendwatch.detectors.engine import Engine

    engine = Engine(DetectorsConfig())
    state = engine.new_state("key:k1")
    switch = T0 + timedelta(days=2, hours=10)
    for e in by_time(sessions(T0, 24 * 2 + 10, office(6, 1), habit(0.05))):
        engine.process(state, e)
    state = engine.loads(engine.dumps(state))
    alerts = []
    for e in by_time(sessions(switch, 2, office(6, 1), lambda _: "claude-opus-4-1")):
        alerts += engine.process(state, e)
    assert [a.detector for a in alerts if a.detector == "model_mix_drift"] == ["model_mix_drift"]


def _opus_pair(start: datetime, key: str) -> list[GatewayEvent]:
    """Two opus sessions an hour apart, ten calls each (about $2 a session)."""
    return [call(start + timedelta(hours=h, minutes=i), "claude-opus-4-1", key=key, session=f"{key}-opus-{h}",
                 tokens=20_000, output=1_500) for h in (0, 1) for i in range(10)]


def test_two_frontier_sessions_page_only_where_a_long_history_makes_them_improbable():
    # the same two ~$2 opus sessions on two keys that never used a frontier model: one with about twenty
    # sessions of history (its 0% share is a guess), one with a busy week of them (its 0% share is known)
    start = T0 + timedelta(days=7, hours=10)
    short = sessions(T0, 24 * 7 + 10, lambda t: 1 / 8 if 9 <= t.hour < 17 and t.weekday() < 5 else 0,
                     lambda _: "claude-sonnet-4-5", key="short")
    long = sessions(T0, 24 * 7 + 10, office(4, 1), lambda _: "claude-sonnet-4-5", key="long")
    pages = drift_pages(short + long + _opus_pair(start, "short") + _opus_pair(start, "long"))
    triggers = [a for a in pages if a.action.value == "trigger" and a.scope == "key"]
    assert [a.subject for a in triggers] == ["long"]
    assert triggers[0].details["drifted_sessions"] == 2 and triggers[0].fired_at == start + timedelta(hours=1)


def test_a_sparse_key_moving_from_five_to_85_percent_pages_within_hours_of_its_own_traffic():
    # about twelve sessions a working day, none at night or on weekends; 5% opus, then 85%
    switch = T0 + timedelta(days=8, hours=9)
    per_hour = office(1.5, 0, 0)
    events = sessions(T0, 24 * 8 + 9, per_hour, habit(0.05), key="sparse")
    events += sessions(switch, 24, per_hour, habit(0.15, rare="claude-sonnet-4-5", usual="claude-opus-4-1"),
                       key="sparse")
    pages = [a for a in drift_pages(events) if a.action.value == "trigger" and a.scope == "key"]
    assert pages and pages[0].subject == "sparse" and pages[0].details["baseline_share"] < 0.1
    # a 5% habit needs about seven sessions of evidence: at 1.5 an hour that is under five hours of its traffic
    assert pages[0].fired_at - switch <= timedelta(hours=8 / 1.5)


def test_a_single_two_dollar_frontier_session_on_a_low_volume_key_never_pages():
    events = sessions(T0, 24 * 9, lambda t: 1 / 6 if t.weekday() < 5 and 9 <= t.hour < 21 else 0,
                      lambda _: "claude-sonnet-4-5", key="low")
    for day in (9, 10, 11):  # once a day for three days: never two within the recent window's evidence
        events += [call(T0 + timedelta(days=day, hours=11, minutes=i), "claude-opus-4-1", key="low",
                        session=f"opus-{day}", tokens=20_000, output=1_500) for i in range(10)]
    assert drift_pages(events) == []


def test_team_drift_is_priced_against_each_key_not_the_team_s_priciest_key():
    # a night-time key running long opus sessions makes the team's average request expensive; two day-time
    # keys on gpt-5-mini move to claude-sonnet-4-5 -- dearer for them, cheaper than the team's average request
    switch = T0 + timedelta(days=4, hours=10)
    events = sessions(T0, 24 * 5, lambda t: 3 if not 8 <= t.hour < 20 else 0, lambda _: "claude-opus-4-1",
                      key="owl", team="search", tokens=60_000, output=3_000, calls=20)
    for i, key in enumerate(("a", "b")):
        events += sessions(T0 + timedelta(minutes=11 * i), 24 * 4 + 10, office(1.5, 0), lambda _: "gpt-5-mini",
                           key=key, team="search")
        events += sessions(switch + timedelta(minutes=11 * i), 6, office(1.5, 0), lambda _: "claude-sonnet-4-5",
                           key=key, team="search")
    team = [a for a in drift_pages(events) if a.scope == "team" and a.action.value == "trigger"]
    assert team and timedelta(0) < team[0].fired_at - switch <= timedelta(hours=1)
    assert team[0].details["drifted"] in ("claude-sonnet-4-5", "frontier")


def test_the_key_s_last_day_counts_in_its_habit_not_only_its_older_sessions():
    # a key two days old, one sonnet session an hour: half of what it is known to do is its last day, which the
    # decayed baseline (sessions older than recent_hours) does not hold yet; two opus sessions are improbable
    start = T0 + timedelta(days=2)
    events = sessions(T0, 48, lambda t: 1, lambda _: "claude-sonnet-4-5")
    events += _opus_pair(start, "k1")
    triggers = [a for a in drift_pages(events) if a.action.value == "trigger"]
    assert triggers and triggers[0].details["drifted_sessions"] == 2
    assert triggers[0].fired_at == start + timedelta(hours=1)


def test_a_cheap_key_s_first_drifted_sessions_page_when_a_day_of_them_would_cost_dollars():
    # a busy, cheap key (about 300 gpt-5-mini calls a day, cents a day) moves to opus: its first opus sessions spend
    # under the $0.10 floor, but a day at that mix adds about $2 -- that pages; demanding $1,000 a day waits for the
    # drifted sessions' own spend to pass the floor
    switch = T0 + timedelta(days=3, hours=10)
    kw = {"tokens": 500, "output": 50, "calls": 4}
    events = sessions(T0, 24 * 3 + 10, office(6, 1), lambda _: "gpt-5-mini", **kw)
    events += sessions(switch, 2, office(6, 1), lambda _: "claude-opus-4-1", **kw)
    [first, *_] = [a for a in drift_pages(events) if a.action.value == "trigger"]
    assert first.details["drifted_usd"] < 0.1
    strict = DetectorsConfig.model_validate({"model_mix_drift": {"min_extra_usd_per_day": "1000"}})
    [late, *_] = [a for a in drift_pages(events, strict) if a.action.value == "trigger"]
    assert late.details["drifted_usd"] >= 0.1 and late.fired_at > first.fired_at


def test_a_busy_key_is_held_to_its_many_looks_a_day():
    # ~700 sessions a day, one in seven on claude-haiku-4-5 (dearer than its gpt-5-mini): six haiku sessions in a row
    # (about (1/7)^6 x 6 = 7e-5 at one look) happen by chance every few days at that volume -- not a page
    busy = lambda t: 30  # noqa: E731
    events = sessions(T0, 24 * 3 + 10, busy, habit(1 / 7, rare="claude-haiku-4-5", usual="gpt-5-mini"))
    run = T0 + timedelta(days=3, hours=10)
    events += sessions(run, 6 / 30, busy, lambda _: "claude-haiku-4-5")
    events += sessions(run + timedelta(hours=6 / 30), 4, busy, habit(1 / 7, rare="claude-haiku-4-5",
                                                                     usual="gpt-5-mini"))
    assert drift_pages(events) == []
    # held to one look's 1e-4, as before sessions a day counted, the same run pages
    per_look = DetectorsConfig.model_validate({"model_mix_drift": {"significance": 1e-4 * 600}})
    assert [a.action.value for a in drift_pages(events, per_look)][:1] == ["trigger"]
