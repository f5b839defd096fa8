"""Aggregation groups and the decisions of what to announce to whom: the pager's pure core.

:class:`Dispatcher` takes alerts in, keeps them in groups (route + group labels), and at
each group's flush time turns the group's changes into :class:`Notification`\\ s, one per
receiver integration, applying silences, inhibition, ``repeat_interval``,
``send_resolved`` and the delivery log (what each integration was already told). No
Kafka, no HTTP, no clock of its own: the service passes ``now`` (monotonic seconds).

Decisions, per integration and alert change (latest change per episode in the window):

- already announced (its event time is not after the last page of the episode here): skip
  (a replay after a restart);
- silenced at its event time, or inhibited by a firing alert at flush time: skip;
- resolve: announced only if the episode was paged here and ``send_resolved``;
- a trigger and its resolve in one window (a short episode, or a catch-up after an outage):
  the owner still hears of it, as one "fired and cleared" notification (a PagerDuty trigger
  then its resolve), unless silenced or inhibited;
- repeat: announced if ``repeat_interval`` (event time) passed since the episode's last
  page here, as a trigger if the episode was never paged here (silence expired, say).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from spendwatch.schemas.alert import Action, Alert
from spendwatch.sinks.paging.config import GROUP_BY_ALERT, PagingConfig
from spendwatch.sinks.paging.inhibition import Inhibitor
from spendwatch.sinks.paging.matchers import alert_labels
from spendwatch.sinks.paging.notification import Link, Notification
from spendwatch.sinks.paging.routing import Route
from spendwatch.sinks.paging.silences import Silencer


@dataclass(frozen=True)
class IntegrationSpec:
    """One delivery target of a receiver: ``id`` is receiver/kind/index."""

    id: str
    receiver: str
    send_resolved: bool = True


@dataclass(frozen=True)
class Paged:
    """What an integration was last told about an episode (a record of the delivery log)."""

    action: Action
    fired_at: datetime


@dataclass
class Group:
    key: str
    route: Route
    labels: dict[str, str]
    members: dict[str, Alert] = field(default_factory=dict)
    changes: dict[str, Alert] = field(default_factory=dict)
    opened: dict[str, Alert] = field(default_factory=dict)
    refs: list[Hashable] = field(default_factory=list)
    next_flush: float | None = None
    last_flush: float | None = None

    @property
    def incident_key(self) -> str:
        if GROUP_BY_ALERT in self.route.group_by:
            return self.labels["dedup_key"]
        return f"spendwatch-{self.key}"


@dataclass
class FlushResult:
    notifications: list[Notification] = field(default_factory=list)
    paged: dict[tuple[str, str], Paged] = field(default_factory=dict)
    done_refs: list[Hashable] = field(default_factory=list)
    muted: list[tuple[str, str]] = field(default_factory=list)


class _Labels(dict):
    def __missing__(self, key: str) -> str:
        return ""


class Dispatcher:
    """Routes, groups and decides. ``integrations`` maps receiver name -> its integrations."""

    def __init__(self, config: PagingConfig, integrations: Mapping[str, list[IntegrationSpec]],
                 on_ref_done: Callable[[Hashable], None] | None = None):
        self.config = config
        self.tree = Route.from_config(config.route)
        self.integrations = integrations
        self.silencer = Silencer(config.silences)
        self.inhibitor = Inhibitor(config.inhibit_rules)
        self.groups: dict[str, Group] = {}
        self.firing: dict[str, Alert] = {}
        self.paged: dict[tuple[str, str], Paged] = {}
        self._ref_counts: dict[Hashable, int] = {}
        self.dirty_firing: set[str] = set()

    # -- input ---------------------------------------------------------------------------
    def restore(self, firing: Iterable[Alert], paged: Mapping[tuple[str, str], Paged]) -> None:
        """Rebuild state from the delivery log: firing episodes join their groups as already known."""
        self.paged.update(paged)
        for alert in firing:
            self.firing[alert.dedup_key] = alert
            for route in self.tree.match(alert_labels(alert)):
                group = self._group(route, alert_labels(alert))
                group.members[alert.dedup_key] = alert
                group.last_flush = float("-inf")

    def ingest(self, alert: Alert, ref: Hashable, now: float) -> list[Hashable]:
        """Take one alert; returns refs already done (an alert no route accepts)."""
        labels = alert_labels(alert)
        if alert.action == Action.resolve:
            self.firing.pop(alert.dedup_key, None)
        else:
            self.firing[alert.dedup_key] = alert
        self.dirty_firing.add(alert.dedup_key)
        routes = self.tree.match(labels)
        if not routes:
            return [ref]
        self._ref_counts[ref] = self._ref_counts.get(ref, 0) + len(routes)
        for route in routes:
            group = self._group(route, labels)
            if alert.action == Action.resolve:
                group.members.pop(alert.dedup_key, None)
            else:
                group.members[alert.dedup_key] = alert
                group.opened.setdefault(alert.dedup_key, alert)
            group.changes[alert.dedup_key] = alert
            group.refs.append(ref)
            if group.next_flush is None:
                if group.last_flush is None:
                    group.next_flush = now + route.group_wait.total_seconds()
                else:
                    group.next_flush = max(now, group.last_flush + route.group_interval.total_seconds())
        return []

    def _group(self, route: Route, labels: Mapping[str, str]) -> Group:
        key = route.group_key(labels)
        if key not in self.groups:
            self.groups[key] = Group(key, route, route.group_labels(labels))
        return self.groups[key]

    # -- timing --------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times = [g.next_flush for g in self.groups.values() if g.next_flush is not None]
        return min(times) if times else None

    def flush_due(self, now: float, everything: bool = False) -> FlushResult:
        result = FlushResult()
        for group in list(self.groups.values()):
            if group.next_flush is not None and (everything or group.next_flush <= now):
                self._flush(group, now, result)
        return result

    # -- decisions -----------------------------------------------------------------------
    def _labels(self, alert: Alert) -> dict[str, str]:
        """The alert's labels, with its severity after the per-detector mapping (what inhibition compares)."""
        labels = alert_labels(alert)
        if (severity := self.config.severity.get(alert.detector)) is not None:
            labels["severity"] = severity.value
        return labels

    def _muted(self, alert: Alert, firing_labels: Mapping[str, Mapping[str, str]]) -> str | None:
        labels = self._labels(alert)
        if silence := self.silencer.silenced_by(labels, alert.fired_at):
            return f"silenced: {silence.comment}"
        if alert.action != Action.resolve and (source := self.inhibitor.inhibited_by(labels, firing_labels)):
            return f"inhibited by {source}"
        return None

    def _flush(self, group: Group, now: float, result: FlushResult) -> None:
        firing_labels = {k: self._labels(a) for k, a in self.firing.items()}
        display = [a for a in group.members.values() if self._muted(a, firing_labels) is None]
        severity = {a.dedup_key: self.config.severity.get(a.detector, a.severity) for a in [*group.members.values(), *group.changes.values()]}
        for spec in self.integrations.get(group.route.receiver, []):
            covers: list[str] = []
            announced: dict[str, Action] = {}
            resolved: list[Alert] = []
            cleared: list[Alert] = []
            for alert in group.changes.values():
                fired = group.opened.get(alert.dedup_key)
                if fired is not None and alert.action == Action.resolve and self._unannounced(spec, fired, firing_labels, result):
                    covers += [fired.notification_id, alert.notification_id]
                    cleared.append(fired)
                    action = Action.trigger
                    if spec.send_resolved:
                        action = Action.resolve
                        resolved.append(alert)
                    announced[alert.dedup_key] = action
                    result.paged[(spec.id, alert.dedup_key)] = self.paged[(spec.id, alert.dedup_key)] = Paged(Action.resolve, alert.fired_at)
                    continue
                action = self._decide(spec, alert, group.route, firing_labels, result)
                if action is None:
                    continue
                covers.append(alert.notification_id)
                announced[alert.dedup_key] = action
                result.paged[(spec.id, alert.dedup_key)] = self.paged[(spec.id, alert.dedup_key)] = Paged(action, alert.fired_at)
                if action == Action.resolve:
                    resolved.append(alert)
            if not covers:
                continue
            result.notifications.append(Notification(
                id=Notification.make_id(spec.id, group.key, covers),
                integration=spec.id, receiver=spec.receiver, group_key=group.key, group_labels=group.labels,
                incident_key=group.incident_key, firing=display, resolved=resolved, cleared=cleared, covers=covers,
                announced=announced, severity=severity, links=self._links(display or resolved),
            ))
        for ref in group.refs:
            self._ref_counts[ref] -= 1
            if self._ref_counts[ref] == 0:
                del self._ref_counts[ref]
                result.done_refs.append(ref)
        group.changes.clear()
        group.opened.clear()
        group.refs.clear()
        group.next_flush = None
        group.last_flush = now
        if not group.members:
            del self.groups[group.key]

    def _unannounced(self, spec: IntegrationSpec, fired: Alert, firing_labels: Mapping[str, Mapping[str, str]],
                     result: FlushResult) -> bool:
        """Whether ``fired`` (a trigger already superseded by its resolve) still has to be told here."""
        last = self.paged.get((spec.id, fired.dedup_key))
        if last is not None and (last.action != Action.resolve or fired.fired_at <= last.fired_at):
            return False
        if reason := self._muted(fired, firing_labels):
            result.muted.append((fired.notification_id, reason))
            return False
        return True

    def _decide(self, spec: IntegrationSpec, alert: Alert, route: Route,
                firing_labels: Mapping[str, Mapping[str, str]], result: FlushResult) -> Action | None:
        last = self.paged.get((spec.id, alert.dedup_key))
        if last is not None and alert.fired_at <= last.fired_at:
            return None
        if reason := self._muted(alert, firing_labels):
            result.muted.append((alert.notification_id, reason))
            return None
        ongoing = last is not None and last.action != Action.resolve
        if alert.action == Action.resolve:
            if not ongoing:
                return None
            if not spec.send_resolved:
                self.paged[(spec.id, alert.dedup_key)] = result.paged[(spec.id, alert.dedup_key)] = Paged(Action.resolve, alert.fired_at)
                return None
            return Action.resolve
        if not ongoing:
            return Action.trigger
        if alert.fired_at - last.fired_at < route.repeat_interval:
            return None
        return Action.repeat

    def _links(self, alerts: list[Alert]) -> list[Link]:
        links: list[Link] = []
        if not alerts:
            return links
        first = alerts[0]
        labels = _Labels(alert_labels(first))
        for text, template in self.config.links.items():
            try:
                links.append(Link(text=text, href=template.format_map(labels)))
            except (ValueError, IndexError):
                continue
        for link in first.details.get("links", []) if isinstance(first.details.get("links"), list) else []:
            if isinstance(link, dict) and link.get("href"):
                links.append(Link(text=str(link.get("text") or link["href"]), href=str(link["href"])))
        return links
