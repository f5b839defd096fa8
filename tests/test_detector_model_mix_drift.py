"""model_mix_drift through the engine: pages a key that moves to a frontier model it rarely used; quiet otherwise."""

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


def call(when: datetime, model: str, *, key: str = "k1", session: str | None = None) -> GatewayEvent:
    provider = next(p for prefix, p in PROVIDERS.items() if model.startswith(prefix))
    cost, _ = compute_cost(model, provider, input_tokens=8_000, output_tokens=600, at=when)
    return GatewayEvent(event_id=f"m{next(_ids)}", event_time=when, gateway="litellm", api_key_hash=key,
                        api_key_alias=f"{key}-alias", team="ml", session_id=session, model=model, provider=provider,
                        input_tokens=8_000, output_tokens=600, cost_usd=cost)


def traffic(start: datetime, hours: int, per_hour: Callable[[datetime], int],
            model_of: Callable[[datetime, int], str], **kw) -> list[GatewayEvent]:
    events = []
    for h in range(hours):
        hour = start + timedelta(hours=h)
        n = per_hour(hour)
        events += [call(hour + timedelta(seconds=i * 3600 / n + 7), model_of(hour, i), **kw) for i in range(n)]
    return events


def office(weekday: int, night: int = 1, weekend: int = 1) -> Callable[[datetime], int]:
    return lambda t: weekend if t.weekday() >= 5 else (weekday if 9 <= t.hour < 18 else night)


def usual_mix(_: datetime, i: int) -> str:
    return "claude-haiku-4-5" if i % 4 == 0 else "claude-sonnet-4-5"


def drift_pages(events, config=None):
    alerts = run_backtest(events, config or DetectorsConfig(), drain=timedelta(hours=6))
    return [a for a in alerts if a.detector == "model_mix_drift"]


def test_pages_when_most_requests_move_to_a_frontier_model_it_never_used():
    switch = T0 + timedelta(days=3, hours=10)
    events = traffic(T0, 24 * 3 + 10, office(40, 3), usual_mix)
    events += traffic(switch, 6, office(40, 3), lambda _, i: "claude-opus-4-1" if i % 20 < 17 else "claude-sonnet-4-5")
    events += traffic(switch + timedelta(hours=6), 14, office(40, 3), usual_mix)
    pages = drift_pages(events)
    assert [a.action.value for a in pages] == ["trigger", "resolve"]
    trigger = pages[0]
    assert timedelta(0) < trigger.fired_at - switch <= timedelta(minutes=30)
    assert "claude-opus-4-1 (frontier)" in trigger.summary and trigger.subject == "k1"
    assert trigger.details["level"] == "model" and trigger.details["baseline_share"] == 0
    assert trigger.root_cause[0].kind == "model" and trigger.root_cause[0].name == "claude-opus-4-1"
    assert trigger.labels["key_alias"] == "k1-alias"


def test_tier_drift_pages_when_no_single_model_dominates():
    switch = T0 + timedelta(days=2, hours=10)
    events = traffic(T0, 24 * 2 + 10, office(30, 3), lambda *_: "gpt-5-mini")
    frontier = ("claude-sonnet-4-5", "o3", "gpt-4.1")  # similar prices: none takes 60% of the spend
    events += traffic(switch, 3, office(150, 3), lambda _, i: frontier[i % 3])
    pages = drift_pages(events)
    assert pages and pages[0].details["level"] == "tier" and pages[0].details["drifted"] == "frontier"
    assert "frontier-tier models" in pages[0].summary


def test_tiers_follow_the_configured_price_thresholds_not_a_model_list():
    switch = T0 + timedelta(days=2, hours=10)
    events = traffic(T0, 24 * 2 + 10, office(30, 3), usual_mix)
    events += traffic(switch, 3, office(30, 3), lambda *_: "claude-opus-4-1")
    config = DetectorsConfig.model_validate(
        {"model_mix_drift": {"tiers": TierThresholds(frontier_min_input_per_mtok=Decimal(20)).model_dump()}})
    [trigger, *_] = drift_pages(events, config)
    assert "claude-opus-4-1 (standard)" in trigger.summary


def test_a_move_to_cheaper_models_is_not_a_page():
    switch = T0 + timedelta(days=2, hours=10)
    events = traffic(T0, 24 * 2 + 10, office(30, 3), lambda *_: "claude-sonnet-4-5")
    events += traffic(switch, 8, office(30, 3), lambda *_: "gpt-5-mini")
    assert drift_pages(events) == []


def test_ordinary_life_is_quiet_seasonality_growth_new_and_sparse_keys():
    week = 24 * 7
    seasonal = traffic(T0, week, office(50, 2, 0), usual_mix, key="seasonal")
    growing = traffic(T0, week, lambda t: int(20 * (1 + (t - T0) / timedelta(days=7))), usual_mix, key="growing")
    new_key = traffic(T0 + timedelta(days=4, hours=9), 30, office(30, 2), lambda *_: "claude-opus-4-1", key="new")
    sparse = [call(T0 + timedelta(days=d, hours=11), "claude-opus-4-1" if d % 2 else "claude-sonnet-4-5",
                   key="sparse") for d in range(7)]
    events = sorted(seasonal + growing + new_key + sparse, key=lambda e: e.event_time)
    assert drift_pages(events) == []


def test_state_survives_a_snapshot_mid_drift():
    from spendwatch.detectors.engine import Engine

    engine = Engine(DetectorsConfig())
    state = engine.new_state("key:k1")
    switch = T0 + timedelta(days=2, hours=10)
    for e in traffic(T0, 24 * 2 + 10, office(30, 3), usual_mix):
        engine.process(state, e)
    state = engine.loads(engine.dumps(state))
    alerts = []
    for e in traffic(switch, 1, office(30, 3), lambda *_: "claude-opus-4-1"):
        alerts += engine.process(state, e)
    assert [a.detector for a in alerts if a.detector == "model_mix_drift"] == ["model_mix_drift"]
