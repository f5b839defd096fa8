"""error_storm through the engine: pages a retry doom loop within minutes; quiet on ordinary failure rates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.event import GatewayEvent

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
_ids = count()


def call(when: datetime, ok: bool, *, key: str = "k1", session: str | None = None,
         error: str = "rate_limit_error") -> GatewayEvent:
    return GatewayEvent(event_id=f"x{next(_ids)}", event_time=when, gateway="litellm", api_key_hash=key,
                        api_key_alias=f"{key}-bot", session_id=session, model="gpt-5", provider="openai",
                        status="success" if ok else "failure", error_type=None if ok else error,
                        input_tokens=2_000 if ok else 0, output_tokens=300 if ok else 0,
                        cost_usd=Decimal("0.005") if ok else Decimal(0))


def traffic(start: datetime, hours: int, per_hour: Callable[[datetime], int], fail_every: int = 100,
            **kw) -> list[GatewayEvent]:
    """``per_hour`` requests an hour; one in ``fail_every`` fails (0: none)."""
    events = []
    for h in range(hours):
        hour = start + timedelta(hours=h)
        n = per_hour(hour)
        events += [call(hour + timedelta(seconds=i * 3600 / n + 3), not fail_every or i % fail_every != 7, **kw)
                   for i in range(n)]
    return events


def office(weekday: int, night: int = 5, weekend: int = 5) -> Callable[[datetime], int]:
    return lambda t: weekend if t.weekday() >= 5 else (weekday if 9 <= t.hour < 18 else night)


def storm_pages(events, config=None):
    alerts = run_backtest(sorted(events, key=lambda e: e.event_time), config or DetectorsConfig(),
                          drain=timedelta(hours=3))
    return [a for a in alerts if a.detector == "error_storm"]


STORM = T0 + timedelta(days=1, hours=14)


def retry_loop(start: datetime, minutes: int, **kw) -> list[GatewayEvent]:
    """A client retrying every 1.5 s; 19 of 20 attempts fail with 429s and 5xx."""
    errors = ("rate_limit_error", "rate_limit_error", "api_error")
    return [call(start + timedelta(seconds=1.5 * i), i % 20 == 0, session="stuck-run", error=errors[i % 3], **kw)
            for i in range(int(minutes * 40))]


def test_pages_a_retry_doom_loop_within_minutes_and_resolves_once_it_stops():
    events = traffic(T0, 24 * 2, office(120)) + retry_loop(STORM, 30)
    pages = storm_pages(events)
    assert [a.action.value for a in pages] == ["trigger", "resolve"]
    trigger, resolve = pages
    assert timedelta(0) < trigger.fired_at - STORM <= timedelta(minutes=3)
    assert trigger.labels["session"] == "stuck-run" and "session stuck-run retried" in trigger.summary
    assert "rate_limit_error" in trigger.summary and trigger.observed >= 0.2 and trigger.expected < 0.05
    stop = STORM + timedelta(minutes=30)
    assert stop < resolve.fired_at <= stop + timedelta(minutes=40)


def test_a_key_that_always_fails_a_lot_is_not_a_storm():
    flaky = traffic(T0, 24 * 2, office(400), fail_every=2)  # a 50%-failing self-hosted endpoint, every day
    assert storm_pages(flaky) == []


def test_without_history_only_the_absolute_rules_apply():
    events = retry_loop(T0 + timedelta(hours=10), 10, key="brand-new")
    assert [a.action.value for a in storm_pages(events)][:1] == ["trigger"]
    config = DetectorsConfig.model_validate({"error_storm": {"min_failures": 500}})
    assert storm_pages(events, config) == []


def test_ordinary_life_is_quiet_seasonality_growth_bursts_and_sparse_keys():
    week = 24 * 7
    seasonal = traffic(T0, week, office(300, 20, 0), key="seasonal")
    growing = traffic(T0, week, lambda t: int(100 * (1 + (t - T0) / timedelta(days=7))), key="grow")
    burst = [call(STORM + timedelta(seconds=2 * i), False, key="burst") for i in range(30)]  # a 1-minute blip
    sparse = [call(T0 + timedelta(days=d, hours=9), d % 2 == 0, key="sparse") for d in range(7)]
    assert storm_pages(seasonal + growing + burst + sparse) == []


def sparse_day(day: datetime, *, key: str, fail: set[int] = frozenset()) -> list[GatewayEvent]:
    """20 requests a working day, in 10 two-call sessions across office hours; calls in ``fail`` fail."""
    events = []
    for i in range(20):
        when = day + timedelta(hours=8, minutes=27 * i + 4)
        events.append(call(when, i not in fail, key=key, session=f"{key}-{day:%d}-{i // 2}"))
    return events


def sdk_call(when: datetime, attempts: str, *, key: str, session: str) -> list[GatewayEvent]:
    """One client call and its SDK retries, 20 s apart: ``"ffo"`` fails twice, then succeeds."""
    return [call(when + timedelta(seconds=20 * i), outcome == "o", key=key, session=session, error="api_error")
            for i, outcome in enumerate(attempts)]


def sparse_history(key: str) -> list[GatewayEvent]:
    """Seven working days of a sparse key, one ordinary failure every other day."""
    return [e for d in range(7) for e in sparse_day(T0 + timedelta(days=d), key=key, fail={5} if d % 2 else set())]


STORM_HOUR = T0 + timedelta(days=7, hours=10)


def test_a_sparse_key_whose_calls_fail_60_percent_for_an_hour_pages():
    # 20 requests a day; in one hour three calls, 5 of their 8 attempts failing (62%)
    storm = (sdk_call(STORM_HOUR, "ffo", key="sparse", session="a") + sdk_call(STORM_HOUR + timedelta(minutes=25), "fo",
             key="sparse", session="b") + sdk_call(STORM_HOUR + timedelta(minutes=50), "ffo", key="sparse", session="c"))
    pages = storm_pages(sparse_history("sparse") + storm)
    assert pages and pages[0].action.value == "trigger"
    assert STORM_HOUR < pages[0].fired_at <= STORM_HOUR + timedelta(hours=1)
    assert pages[0].details["failures"] >= 4 and pages[0].expected <= 0.03


def test_three_failures_in_a_row_on_a_sparse_key_are_one_unlucky_call():
    # one call failing and failing its two SDK retries (the attempts straddle a minute boundary)
    unlucky = sdk_call(STORM_HOUR + timedelta(seconds=45), "fff", key="sparse", session="a")
    after = sdk_call(STORM_HOUR + timedelta(minutes=20), "o", key="sparse", session="b")
    assert storm_pages(sparse_history("sparse") + unlucky + after) == []


def test_a_heavy_key_at_two_percent_failures_never_pages():
    # ~3,000 requests a working day for a week, 1 in 50 failing
    assert storm_pages(traffic(T0, 24 * 7, office(300, 30, 30), fail_every=50, key="heavy")) == []


def test_a_provider_blip_of_a_minute_is_not_the_keys_storm():
    busy = traffic(T0, 24 * 3, office(600, 60, 60), key="busy")
    blip_start = T0 + timedelta(days=2, hours=11, seconds=5)
    blip = [call(blip_start + timedelta(seconds=2 * i), False, key="busy", session=f"s{i % 7}", error="api_error")
            for i in range(25)]  # everything fails for 50 s
    assert storm_pages(busy + blip) == []
    longer = [call(blip_start + timedelta(seconds=6 * i), False, key="busy", session=f"s{i % 7}") for i in range(60)]
    assert [a.action.value for a in storm_pages(busy + longer)][:1] == ["trigger"]  # six minutes is a storm


def test_a_snapshot_restored_under_longer_windows_keeps_them():
    from spendwatch.detectors.config import BaselineConfig, ErrorStormConfig
    from spendwatch.detectors.error_storm import ErrorStorm

    old = ErrorStorm(ErrorStormConfig(windows_minutes=(10,)), BaselineConfig(), "key", "k1")
    restored = ErrorStorm.__new__(ErrorStorm)
    restored.__setstate__(old.__getstate__())
    restored.bind(ErrorStormConfig(), BaselineConfig())
    assert restored.window.window_s == 240 * 60
