"""Alerts: what a detector decided, and what pagers, sinks and the backtest write out.

One *episode* (a key's spend spiking, say) produces one ``trigger``, zero or more
``repeat`` notifications while it lasts, and one ``resolve`` once back to normal; all of
them share the episode's ``dedup_key``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Action(StrEnum):
    trigger = "trigger"
    repeat = "repeat"
    resolve = "resolve"


class Severity(StrEnum):
    """PagerDuty Events v2 severities."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"


class RootCause(BaseModel):
    """One contributor to the anomaly: a model, session, tag, provider or user, with its dollars."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="model, session, tag, provider, user, key")
    name: str
    cost_usd: Decimal
    share: float = Field(ge=0, le=1, description="Fraction of the anomalous spend it accounts for.")
    requests: int = 0


class SeriesPoint(BaseModel):
    """Spend in one bucket of the recent past against the baseline for that bucket."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    spend_usd: Decimal
    baseline_usd: Decimal | None = None


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action
    detector: str
    scope: str = Field(description="key, user, team, session, org")
    subject: str = Field(description="The scope's value: a key hash, a user, a team...")
    fired_at: datetime = Field(description="Event time that triggered this notification, UTC.")
    severity: Severity
    summary: str = Field(max_length=1024, description="One line a human reads first, with dollar figures.")
    observed: float
    expected: float | None = None
    unit: str = Field(default="usd", description="usd, usd_per_hour, ratio, requests, ...")
    dedup_key: str = Field(description="Stable for one episode: trigger, repeats and resolve share it.")
    episode_started_at: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    root_cause: list[RootCause] = Field(default_factory=list)
    series: list[SeriesPoint] = Field(default_factory=list, description="Recent spend against baseline, for sparklines.")
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("fired_at", "episode_started_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def notification_id(self) -> str:
        """Unique per notification, for idempotent delivery."""
        return f"{self.dedup_key}:{self.action.value}:{self.fired_at.isoformat()}"
