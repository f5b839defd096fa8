"""Which event times live ingestion accepts: not far in the future, not older than the retention.

A record dated 9999-12-31 used to be accepted and then freeze a worker's clock; one dated
1970 reached the detectors while ClickHouse dropped it at once (its TTL). The live paths --
``spendwatch ingest`` and the worker's parse stage, which also reads messages produced
straight to the raw topic -- keep only records whose ``event_time`` is within
``[now - max_age_days, now + max_future_minutes]`` and dead-letter the others
(``error_type="out_of_range"``, the reason says by how much and which setting).
The backtest replays files of any age and never applies it.

>>> from datetime import UTC, datetime
>>> from spendwatch.schemas.event import GatewayEvent
>>> now = datetime(2026, 12, 7, 12, tzinfo=UTC).timestamp()
>>> def event(when):
...     return GatewayEvent(event_id="e1", event_time=when, gateway="g", user="ann", model="m", cost_usd=1)
>>> errors = []
>>> kept = within_window([event("2026-12-07T11:00:00Z"), event("9999-12-31T23:59:59Z"),
...                       event("1970-01-01T00:00:00Z")], EventTimeConfig(), now, errors)
>>> [e.event_time.year for e in kept]
[2026]
>>> for error in errors:
...     print(error)  # doctest: +NORMALIZE_WHITESPACE
out_of_range at event_time: 9999-12-31T23:59:59Z is 2,912,102 days after the receiving clock
  (2026-12-07T12:00:00Z); at most 60 min ahead is accepted (adapters.event_time.max_future_minutes)
out_of_range at event_time: 1970-01-01T00:00:00Z is 20,794 days before the receiving clock
  (2026-12-07T12:00:00Z); at most 400 days old is accepted (adapters.event_time.max_age_days,
  by default clickhouse.raw_retention_days)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from spendwatch.schemas.errors import ParseError

if TYPE_CHECKING:
    from spendwatch.schemas.event import GatewayEvent
    from spendwatch.schemas.outcome import OutcomeEvent

    Record = GatewayEvent | OutcomeEvent

#: ClickHouse's default raw retention (``clickhouse.raw_retention_days``), used when the window is read alone.
DEFAULT_MAX_AGE_DAYS = 400


class EventTimeConfig(BaseModel):
    """The event times live ingestion accepts, relative to the receiving machine's clock."""

    model_config = ConfigDict(extra="forbid")

    enforce: bool = Field(
        default=True,
        description="Dead-letter events outside the window at ingest and in the worker's parse stage. Off only to "
        "replay old data through the live pipeline (the demo's generated week); the backtest never checks.",
    )
    max_future_minutes: float = Field(
        default=60, ge=0,
        description="Latest accepted event_time, minutes after the receiving clock (allows for gateway clock skew).",
    )
    max_age_days: float | None = Field(
        default=None, gt=0,
        description="Oldest accepted event_time, days before the receiving clock. Unset: "
        "clickhouse.raw_retention_days (an older event would be dropped by the ClickHouse TTL at once).",
    )

    def bounds(self, now: float) -> tuple[float, float]:
        """The accepted ``(oldest, latest)`` event times as POSIX seconds."""
        age_days = self.max_age_days if self.max_age_days is not None else DEFAULT_MAX_AGE_DAYS
        return now - age_days * 86_400, now + self.max_future_minutes * 60


def within_window(records: Iterable[Record], config: EventTimeConfig, now: float,
                  errors: list[ParseError]) -> list[Record]:
    """The records dated inside the window; one ``out_of_range`` error per other record, appended to ``errors``."""
    kept, rejected = split_by_window(records, config, now)
    errors.extend(error for _, error in rejected)
    return kept


def split_by_window(records: Iterable[Record], config: EventTimeConfig,
                    now: float) -> tuple[list[Record], list[tuple[Record, ParseError]]]:
    """The records inside the window, and each other record with its ``out_of_range`` error."""
    if not config.enforce:
        return list(records), []
    oldest, latest = config.bounds(now)
    kept: list[Record] = []
    rejected: list[tuple[Record, ParseError]] = []
    for record in records:
        ts = record.event_time.timestamp()
        if oldest <= ts <= latest:
            kept.append(record)
        else:
            rejected.append((record, _out_of_range(record, ts, now, config)))
    return kept, rejected


def _out_of_range(record: Record, ts: float, now: float, config: EventTimeConfig) -> ParseError:
    when, clock = _iso(record.event_time), _iso(datetime.fromtimestamp(now, UTC))
    if ts > now:
        by = f"{_human(ts - now)} after the receiving clock ({clock}); at most {config.max_future_minutes:g} min " \
             "ahead is accepted (adapters.event_time.max_future_minutes)"
    else:
        setting = "adapters.event_time.max_age_days" if config.max_age_days is not None else \
            "adapters.event_time.max_age_days, by default clickhouse.raw_retention_days"
        age = config.max_age_days if config.max_age_days is not None else DEFAULT_MAX_AGE_DAYS
        by = f"{_human(now - ts)} before the receiving clock ({clock}); at most {age:g} days old is accepted ({setting})"
    return ParseError("out_of_range", f"{when} is {by}", "event_time")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _human(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:,.0f} min"
    if seconds < 3 * 86_400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86_400:,.0f} days"
