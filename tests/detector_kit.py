"""Synthetic, deterministic spend series for the detector tests (no randomness: patterns only)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.alert import Alert
from spendwatch.schemas.event import GatewayEvent

#: A Monday, 00:00 UTC.
T0 = datetime(2026, 11, 2, tzinfo=UTC)

_counter = iter(range(10**9))


def event(when: datetime, dollars: float | Decimal, *, key: str = "k1", session: str | None = None,
          model: str = "gpt-4o", team: str | None = None, tags: tuple[str, ...] = (), alias: str | None = None,
          user: str | None = None) -> GatewayEvent:
    return GatewayEvent(
        event_id=f"e{next(_counter)}", event_time=when, gateway="litellm", api_key_hash=key, api_key_alias=alias,
        user=user, team=team, session_id=session, model=model, tags=tags,
        cost_usd=Decimal(str(round(float(dollars), 6))), input_tokens=1000, output_tokens=200,
    )


def hourly_traffic(start: datetime, hours: int, dollars_per_hour: Callable[[datetime], float], *,
                   per_hour: int = 6, **fields) -> list[GatewayEvent]:
    """``per_hour`` evenly spaced requests each hour, together costing ``dollars_per_hour(hour_start)``."""
    events = []
    for h in range(hours):
        hour = start + timedelta(hours=h)
        dollars = dollars_per_hour(hour)
        if dollars <= 0:
            continue
        for i in range(per_hour):
            events.append(event(hour + timedelta(minutes=i * 60 / per_hour + 1), dollars / per_hour, **fields))
    return events


def flat(rate: float) -> Callable[[datetime], float]:
    return lambda _: rate


def office_hours(weekday_rate: float, night_rate: float = 0.0, weekend_rate: float = 0.0) -> Callable[[datetime], float]:
    """Busy 9-17 on weekdays, ``night_rate`` otherwise on weekdays, ``weekend_rate`` all weekend."""
    def rate(hour: datetime) -> float:
        if hour.weekday() >= 5:
            return weekend_rate
        return weekday_rate if 9 <= hour.hour < 17 else night_rate
    return rate


def run(events: Iterable[GatewayEvent], config: DetectorsConfig | None = None,
        drain: timedelta = timedelta(days=1)) -> list[Alert]:
    """Backtest, ticking on for ``drain`` after the last event so open episodes resolve."""
    return list(run_backtest(list(events), config or DetectorsConfig(), drain=drain))


def of(alerts: Iterable[Alert], detector: str, action: str | None = None) -> list[Alert]:
    return [a for a in alerts if a.detector == detector and (action is None or a.action.value == action)]


def only(config_overrides: dict | None = None, **enabled: bool) -> DetectorsConfig:
    """A config with just the named detectors enabled (plus overrides per section)."""
    data: dict = {name: {"enabled": False} for name in DetectorsConfig().detector_settings()}
    for name in enabled:
        data[name] = {"enabled": True}
    for section, values in (config_overrides or {}).items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return DetectorsConfig.model_validate(data)
