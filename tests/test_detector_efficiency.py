"""efficiency through the engine: pages when spend per accepted outcome climbs while outcomes stay flat."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.outcome import OutcomeEvent

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
_ids = count()


def session(start: datetime, dollars: float, *, key: str = "k1", calls: int = 10, accepted: bool = True,
            tokens_per_call: int = 20_000) -> list[GatewayEvent | OutcomeEvent]:
    """One agent session: ``calls`` requests costing ``dollars`` in total, then (maybe) an accepted task."""
    sid = f"{key}-s{next(_ids)}"
    out: list[GatewayEvent | OutcomeEvent] = [
        GatewayEvent(event_id=f"f{next(_ids)}", event_time=start + timedelta(seconds=30 * i), gateway="litellm",
                     api_key_hash=key, api_key_alias=f"{key}-agent", team="ml", session_id=sid,
                     model="claude-sonnet-4-5", provider="anthropic", input_tokens=tokens_per_call, output_tokens=500,
                     cost_usd=Decimal(str(round(dollars / calls, 6))))
        for i in range(calls)
    ]
    if accepted:
        out.append(OutcomeEvent(outcome_id=f"o{next(_ids)}", event_time=start + timedelta(seconds=30 * calls + 120),
                                kind="task_accepted", api_key_hash=key, team="ml", session_id=sid))
    return out


def workdays(days: int, sessions_per_hour: Callable[[datetime], int], dollars: Callable[[datetime], float],
             **kw) -> list:
    records = []
    for h in range(24 * days):
        hour = T0 + timedelta(hours=h)
        n = sessions_per_hour(hour)
        for i in range(n):
            records += session(hour + timedelta(minutes=i * 60 // max(n, 1)), dollars(hour), **kw)
    return records


def office(per_hour: int) -> Callable[[datetime], int]:
    return lambda t: 0 if t.weekday() >= 5 else (per_hour if 9 <= t.hour < 18 else 0)


def efficiency_pages(records, config=None):
    alerts = run_backtest(sorted(records, key=lambda r: r.event_time), config or DetectorsConfig(),
                          drain=timedelta(hours=12))
    return [a for a in alerts if a.detector == "efficiency"]


DECAY = T0 + timedelta(days=2)


def test_pages_when_cost_per_outcome_triples_and_outcomes_stay_flat():
    records = workdays(5, office(2), lambda t: 3.0 if t >= DECAY else 1.0)
    pages = efficiency_pages(records)
    assert [a.action.value for a in pages][:1] == ["trigger"]
    trigger = pages[0]
    assert DECAY < trigger.fired_at < DECAY + timedelta(hours=36)
    assert trigger.details["ratio"] >= 2 and trigger.details["outcome_rate_ratio"] <= 1.25
    assert "per accepted outcome" in trigger.summary and trigger.unit == "usd"
    assert trigger.labels["key_alias"] == "k1-agent"


def test_tokens_metric():
    records = workdays(5, office(2), lambda t: 1.0)
    config = DetectorsConfig.model_validate({"efficiency": {"metric": "tokens", "min_window_spend_usd": 0}})
    heavy = [r for hour in range(9, 18) for d in (2, 3, 4)
             for r in session(T0 + timedelta(days=d, hours=hour, minutes=45), 0.0, calls=10, accepted=False,
                              tokens_per_call=100_000)]
    pages = efficiency_pages(records + heavy, config)
    assert pages and pages[0].unit == "tokens" and "tokens per accepted outcome" in pages[0].summary


def test_more_work_for_more_money_is_growth_not_decay():
    records = workdays(5, lambda t: office(2)(t) * (3 if t >= DECAY else 1), lambda t: 1.0)
    assert efficiency_pages(records) == []


def test_one_large_session_without_an_outcome_is_not_a_trend():
    records = workdays(5, office(2), lambda t: 1.0)
    records += session(DECAY + timedelta(hours=10), 60.0, calls=200, accepted=False)
    assert efficiency_pages(records) == []


def test_quiet_for_seasonality_new_sparse_and_small_keys_and_keys_without_outcomes():
    seasonal = workdays(7, office(3), lambda t: 1.0, key="seasonal")
    no_outcomes = workdays(5, office(2), lambda t: 3.0 if t >= DECAY else 1.0, key="silent", accepted=False)
    small = workdays(5, office(2), lambda t: 0.3 if t >= DECAY else 0.1, key="small")  # $25/day guard
    new_key = [r for r in workdays(5, office(2), lambda t: 1.0, key="new") if r.event_time >= DECAY]
    sparse = [r for d in range(7) for r in session(T0 + timedelta(days=d, hours=11), 5.0 * (d + 1), key="sparse")]
    assert efficiency_pages(seasonal + no_outcomes + small + new_key + sparse) == []
