"""A notification: what one receiver integration is told about one group at one moment.

It may cover several alerts (several keys of one team in one Slack message, one
PagerDuty incident per group). Its ``id`` is derived from the integration, the group and
the alert notifications it announces, so rebuilding it after a crash yields the same id.

Exactly-once contract: each alert notification (``Alert.notification_id``: one
trigger, repeat or resolve of an episode) is announced at most once per integration,
and — as long as the integration eventually accepts it — at least once.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from spendwatch.schemas.alert import Action, Alert, Severity

SEVERITY_ORDER = {Severity.critical: 0, Severity.error: 1, Severity.warning: 2, Severity.info: 3}


class Link(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    href: str


class Notification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    integration: str = Field(description="receiver/kind/index, e.g. payments/slack/0")
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    incident_key: str = Field(description="PagerDuty dedup_key of the group: the episode's dedup_key when grouping per episode.")
    firing: list[Alert] = Field(description="Every alert of the group still firing (not silenced, not inhibited), newest figures.")
    resolved: list[Alert] = Field(default_factory=list, description="Episodes whose recovery this notification announces.")
    cleared: list[Alert] = Field(default_factory=list, description="Triggers of episodes that fired and cleared before they could be announced; told here together with their resolve.")
    covers: list[str] = Field(description="Alert notification ids announced for the first time here.")
    announced: dict[str, Action] = Field(description="dedup_key -> what is announced for it: trigger (new here), repeat or resolve.")
    severity: dict[str, Severity] = Field(default_factory=dict, description="dedup_key -> severity after the per-detector mapping.")
    links: list[Link] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @staticmethod
    def make_id(integration: str, group_key: str, covers: list[str]) -> str:
        text = "\n".join([integration, group_key, *sorted(covers)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "firing" if self.firing else "resolved"

    @property
    def fired_and_cleared(self) -> bool:
        """Nothing fires any more, but this announces episodes that fired and cleared unseen."""
        return not self.firing and bool(self.cleared)

    @property
    def is_repeat(self) -> bool:
        """Only still-burning reminders, nothing new and nothing resolved."""
        return not self.cleared and all(a == Action.repeat for a in self.announced.values())

    def severity_of(self, alert: Alert) -> Severity:
        return self.severity.get(alert.dedup_key, alert.severity)

    @property
    def top_severity(self) -> Severity:
        alerts = self.firing or self.cleared or self.resolved
        return min((self.severity_of(a) for a in alerts), key=SEVERITY_ORDER.__getitem__)

    @property
    def headline(self) -> Alert:
        """The alert a human should read first: worst severity, then largest overshoot."""
        alerts = self.firing or self.cleared or self.resolved
        return sorted(alerts, key=lambda a: (SEVERITY_ORDER[self.severity_of(a)], -overshoot(a)))[0]

    @property
    def new_keys(self) -> set[str]:
        return {k for k, a in self.announced.items() if a == Action.trigger} | {a.dedup_key for a in self.cleared}


def overshoot(alert: Alert) -> float:
    """observed / expected, or 0 when there is no expectation."""
    if not alert.expected:
        return 0.0
    return alert.observed / alert.expected


def fmt_value(value: float | Decimal | None, unit: str) -> str:
    """A figure with its unit, the way a person reads it.

    >>> fmt_value(8123.456, "usd"), fmt_value(12.3, "usd_per_hour"), fmt_value(0.123, "ratio"), fmt_value(1234, "requests")
    ('$8,123.46', '$12.30/h', '12.3%', '1,234 requests')
    """
    if value is None:
        return "n/a"
    v = float(value)
    if unit == "usd":
        return f"${v:,.2f}"
    if unit == "usd_per_hour":
        return f"${v:,.2f}/h"
    if unit == "ratio":
        return f"{v * 100:.1f}%"
    if v.is_integer():
        return f"{int(v):,} {unit}"
    return f"{v:,.2f} {unit}"


def comparison(alert: Alert) -> str:
    """'$812.00 vs $95.00 expected (8.5x)' — how much, compared to what.

    A resolve says what the episode was: how long, what the subject spent in its hours, and the
    figure now when the detector gave one (never a bare "$0.00").

    >>> from datetime import datetime, UTC
    >>> end = Alert(action="resolve", detector="error_storm", scope="key", subject="k", severity="error",
    ...             fired_at=datetime(2026, 11, 5, tzinfo=UTC), summary="s", observed=0.0, dedup_key="d",
    ...             details={"episode_minutes": 42.0, "episode_spend_usd": "12.3456", "episode_spend_hours": 2})
    >>> comparison(end)
    'episode over after 42 min; $12.35 spent in its 2 h'
    """
    if alert.action == Action.resolve and "episode_minutes" in alert.details:
        return _episode_text(alert)
    text = fmt_value(alert.observed, alert.unit)
    if alert.expected is not None:
        text += f" vs {fmt_value(alert.expected, alert.unit)} expected"
        if alert.expected and alert.unit != "ratio":
            text += f" ({overshoot(alert):.1f}x)"
    return text


def _episode_text(alert: Alert) -> str:
    minutes = float(alert.details["episode_minutes"])
    lasted = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    text = f"episode over after {lasted}"
    if (spent := alert.details.get("episode_spend_usd")) is not None:
        text += f"; {fmt_value(Decimal(spent), 'usd')} spent in its {alert.details.get('episode_spend_hours', 1)} h"
    if alert.expected is not None:
        text += f"; now {fmt_value(alert.observed, alert.unit)} vs {fmt_value(alert.expected, alert.unit)} expected"
    return text


def short_hash(subject: str) -> str:
    """A key hash short enough to read and still tell keys apart: its first 8 characters.

    >>> short_hash("0e6c316344be2daf008cbf5c3285f8ad0e933832d9e1f1e2c857cba8c37160c7"), short_hash("sk-9f2c")
    ('0e6c3163…', 'sk-9f2c')
    """
    return subject if len(subject) <= 12 else subject[:8] + "…"


def owner(alert: Alert) -> str:
    """Who owns it, compactly: 'key support-agent (0e6c3163…), team payments'."""
    labels = alert.labels
    if alert.scope == "key" and labels.get("key_alias"):
        who = f"key {labels['key_alias']} ({short_hash(alert.subject)})"
    else:
        who = f"{alert.scope} {alert.subject}"
    if alert.scope != "team" and labels.get("team"):
        who += f", team {labels['team']}"
    return who


def root_cause_text(alert: Alert, limit: int = 3) -> list[str]:
    return [
        f"{rc.kind} {rc.name}: ${rc.cost_usd:,.2f} ({rc.share:.0%})" + (f", {rc.requests:,} requests" if rc.requests else "")
        for rc in alert.root_cause[:limit]
    ]


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], top: float | None = None) -> str:
    """Unicode block sparkline; ``top`` fixes the scale so two lines compare.

    >>> sparkline([0, 1, 2, 4])
    '▁▃▅█'
    """
    if not values:
        return ""
    top = top if top is not None else max(values)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, max(0, round(v / top * (len(SPARK) - 1))))] for v in values)


def spend_sparklines(alert: Alert, points: int = 24) -> tuple[str, str] | None:
    """(spend, baseline) sparklines over the last ``points`` buckets of ``Alert.series``, same scale."""
    series = alert.series[-points:]
    if not series:
        return None
    spend = [float(p.spend_usd) for p in series]
    base = [float(p.baseline_usd or 0) for p in series]
    top = max(spend + base)
    return sparkline(spend, top), (sparkline(base, top) if any(p.baseline_usd is not None for p in series) else "")
