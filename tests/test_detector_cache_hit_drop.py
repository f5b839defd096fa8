"""cache_hit_drop through the engine: pages when a caching key's hit ratio collapses; quiet otherwise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count

from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.pricing import compute_cost

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
_ids = count()


def call(when: datetime, hit_ratio: float, *, key: str = "k1", tokens: int = 40_000) -> GatewayEvent:
    cached = int(tokens * hit_ratio)
    cost, _ = compute_cost("claude-sonnet-4-5", "anthropic", input_tokens=tokens, cache_read_tokens=cached,
                           output_tokens=800, at=when)
    return GatewayEvent(event_id=f"c{next(_ids)}", event_time=when, gateway="litellm", api_key_hash=key,
                        api_key_alias=f"{key}-agent", model="claude-sonnet-4-5", provider="anthropic",
                        input_tokens=tokens, cache_read_tokens=cached, output_tokens=800, cost_usd=cost)


def traffic(start: datetime, hours: int, per_hour: Callable[[datetime], int], ratio: Callable[[datetime], float],
            **kw) -> list[GatewayEvent]:
    events = []
    for h in range(hours):
        hour = start + timedelta(hours=h)
        n = per_hour(hour)
        events += [call(hour + timedelta(seconds=i * 3600 / n + 5), ratio(hour), **kw) for i in range(n)]
    return events


def office(weekday: int, night: int = 2, weekend: int = 2) -> Callable[[datetime], int]:
    return lambda t: weekend if t.weekday() >= 5 else (weekday if 9 <= t.hour < 18 else night)


def cache_pages(events, config=None):
    alerts = run_backtest(sorted(events, key=lambda e: e.event_time), config or DetectorsConfig(),
                          drain=timedelta(hours=6))
    return [a for a in alerts if a.detector == "cache_hit_drop"]


def test_pages_when_the_hit_ratio_collapses_and_holds_one_episode_overnight():
    broken = T0 + timedelta(days=2, hours=11)
    fixed = T0 + timedelta(days=3, hours=15)
    events = traffic(T0, 24 * 4, office(40),
                     lambda t: 0.005 if broken <= t < fixed else 0.75)
    pages = cache_pages(events)
    actions = [a.action.value for a in pages]  # one episode through the night: repeats, no re-trigger
    assert actions[0] == "trigger" and actions[-1] == "resolve" and set(actions[1:-1]) == {"repeat"}
    assert len({a.dedup_key for a in pages}) == 1
    trigger = pages[0]
    assert timedelta(0) < trigger.fired_at - broken <= timedelta(minutes=60)
    assert trigger.observed < 0.2 and 0.7 < trigger.expected < 0.8
    assert "prompt-cache hit ratio" in trigger.summary and "k1-agent" in trigger.summary
    assert trigger.details["estimated_extra_usd"] >= 1
    assert fixed < pages[-1].fired_at < fixed + timedelta(hours=3)


def test_a_moderate_dip_is_not_a_collapse():
    dip = T0 + timedelta(days=2, hours=11)
    events = traffic(T0, 24 * 3, office(40), lambda t: 0.45 if t >= dip else 0.75)
    assert cache_pages(events) == []


def test_a_key_that_never_cached_cannot_drop():
    events = traffic(T0, 24 * 3, office(40), lambda t: 0.0 if t >= T0 + timedelta(days=2) else 0.1)
    assert cache_pages(events) == []


def test_quiet_on_seasonality_growth_new_and_sparse_keys():
    week = 24 * 7
    seasonal = traffic(T0, week, office(60, 1, 0), lambda t: 0.7, key="seasonal")
    growing = traffic(T0, week, lambda t: int(20 * (1 + (t - T0) / timedelta(days=7))), lambda t: 0.7, key="grow")
    new_key = traffic(T0 + timedelta(days=3, hours=9), 12, office(40), lambda t: 0.0, key="new")  # no cache yet
    sparse = [call(T0 + timedelta(days=d, hours=10), 0.8 if d < 4 else 0.0, key="sparse") for d in range(7)]
    assert cache_pages(seasonal + growing + new_key + sparse) == []


def test_low_volume_drop_waits_for_enough_traffic():
    broken = T0 + timedelta(days=2, hours=11)
    events = traffic(T0, 24 * 2 + 11, office(40), lambda t: 0.75)
    events += [call(broken + timedelta(minutes=10 * i), 0.0) for i in range(12)]  # 6 an hour: below min_requests
    assert cache_pages(events) == []
    config = DetectorsConfig.model_validate({"cache_hit_drop": {"min_requests": 5, "min_wasted_usd": "0.1"}})
    assert [a.action.value for a in cache_pages(events, config)][:1] == ["trigger"]
