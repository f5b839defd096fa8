"""Labelled evaluation: score the pages a backtest sent against incidents a human labelled.

A label names an incident family, exactly one subject (a key -- its alias or hash as the
events carry it --, a team, or a session) and a time window. :func:`evaluate` is pure: given
the labels, the notifications and a :class:`Directory` of who is who (built from the same
events), it reports per family found / total, time to detect and which detector paged
first; the false pages per 100 key-days after the warm-up; and the pages per detector.

Matching rules (a notification against a label):

* **What**: a ``trigger`` or ``repeat`` notification finds a label (an episode opened just
  before the incident and re-notified during it did tell on-call); only ``trigger`` ones
  can be false pages (a repeat is the same decision, re-sent).
* **Time**: fired within ``[start - before, end + after]`` (default 15 min before -- a label's
  start is a human's estimate -- and 6 h after, for the episodes judged on a day or a window).
* **Subject, direct** (counts as the label's detection and for time to detect):
  key label -- a page on that key or on its user;
  session label -- a page on the session, on its key or on the key's user (the key's owner is
  who gets paged for a session; its root cause names the session);
  team label -- a page on the team, and, except for ``budget_overrun``, a page on any of the
  team's keys or users (a team-wide mix drift shows on each of its keys; a key's spike is not
  a budget pace).
* **Subject, related** (neither a detection nor a false page): a page on the team of a key or
  session label's key, a page on the org, and a key page inside a team's ``budget_overrun``.
* Everything else after the warm-up is a **false page**. Key-days: days after the warm-up on
  which a key sent at least one request.

>>> from datetime import UTC, datetime
>>> t = lambda h: datetime(2026, 11, 10, h, tzinfo=UTC)
>>> directory = Directory(start=datetime(2026, 11, 2, tzinfo=UTC), end=t(23), aliases={"bot": "h1"},
...                       key_team={"h1": "search"}, key_days=70)
>>> labels = [IncidentLabel("spend_spike", t(9), t(12), key="bot")]
>>> alerts = [{"action": "trigger", "detector": "spend_spike", "scope": "key", "subject": "h1",
...            "fired_at": t(10)}, {"action": "trigger", "detector": "burn_rate", "scope": "key",
...            "subject": "h2", "fired_at": t(20)}]
>>> report = evaluate(labels, alerts, directory)
>>> report["families"]["spend_spike"]["found"], report["families"]["spend_spike"]["ttd_median_minutes"]
(1, 60.0)
>>> report["false_pages"]["count"], report["false_pages"]["per_100_key_days"]
(1, 1.43)
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

#: The detector that should page each incident family first.
FAMILY_DETECTORS: dict[str, str] = {
    "runaway_loop": "runaway_loop",
    "session_burn": "session_burn",
    "spend_spike": "spend_spike",
    "model_mix_drift": "model_mix_drift",
    "context_bloat": "context_bloat",
    "cache_hit_drop": "cache_hit_drop",
    "error_storm": "error_storm",
    "budget_overrun": "budget_pace",
}

DEFAULT_BEFORE = timedelta(minutes=15)
DEFAULT_AFTER = timedelta(hours=6)


class LabelError(ValueError):
    """A labels file that cannot be read; the message names the row."""


@dataclass(frozen=True, slots=True)
class IncidentLabel:
    """One labelled incident: family, exactly one of key / team / session, and its window (UTC)."""

    family: str
    start: datetime
    end: datetime
    key: str = ""
    team: str = ""
    session: str = ""
    detail: str = ""

    @property
    def subject(self) -> str:
        if self.session:
            return f"session {self.session}"
        if self.key:
            return f"key {self.key}"
        return f"team {self.team}"


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise LabelError(f"{where}: missing time")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise LabelError(f"{where}: {value!r} is not an ISO-8601 time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _label(row: Mapping[str, Any], where: str) -> IncidentLabel:
    family = str(row.get("family") or "").strip()
    if not family:
        raise LabelError(f"{where}: missing family")
    subjects = {name: str(row.get(name) or "").strip() for name in ("key", "team", "session")}
    if not any(subjects.values()):
        raise LabelError(f"{where}: set one of key, team, session")
    start, end = _time(row.get("start"), f"{where} start"), _time(row.get("end"), f"{where} end")
    if end < start:
        raise LabelError(f"{where}: end {end.isoformat()} is before start {start.isoformat()}")
    return IncidentLabel(family, start, end, detail=str(row.get("detail") or ""), **subjects)


def parse_labels(text: str | bytes, *, name: str = "labels") -> list[IncidentLabel]:
    """Labels from CSV (a header row with ``family,key,team,session,start,end``) or a JSON list.

    >>> parse_labels("family,key,team,session,start,end\\nerror_storm,bot,,,2026-11-10T09:00Z,2026-11-10T10:00Z")[0].key
    'bot'
    >>> parse_labels('[{"family": "x", "start": "2026-11-10T09:00Z", "end": "2026-11-10T10:00Z"}]')
    Traceback (most recent call last):
    ...
    spendwatch.detectors.evaluation.LabelError: labels item 1: set one of key, team, session
    """
    raw = text.decode("utf-8-sig") if isinstance(text, bytes) else text
    if raw.lstrip().startswith(("[", "{")):
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise LabelError(f"{name}: not valid JSON ({exc})") from None
        if isinstance(items, dict):
            items = items.get("labels", [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise LabelError(f"{name}: expected a JSON list of objects")
        return [_label(item, f"{name} item {n}") for n, item in enumerate(items, 1)]
    reader = csv.DictReader(io.StringIO(raw))
    missing = {"family", "start", "end"} - set(reader.fieldnames or ())
    if missing:
        raise LabelError(f"{name}: CSV header lacks {', '.join(sorted(missing))}")
    return [_label(row, f"{name} line {n}") for n, row in enumerate(reader, 2)]


def read_labels(path: Path) -> list[IncidentLabel]:
    return parse_labels(path.read_bytes(), name=str(path))


@dataclass(slots=True)
class Directory:
    """Who is who in the evaluated events: key aliases, teams, users, sessions, active days."""

    start: datetime
    end: datetime
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> key hash
    key_team: dict[str, str] = field(default_factory=dict)
    key_user: dict[str, str] = field(default_factory=dict)
    key_org: dict[str, str] = field(default_factory=dict)
    session_key: dict[str, str] = field(default_factory=dict)
    key_requests: Counter[str] = field(default_factory=Counter)  # requests per key over the whole run
    key_micros: Counter[str] = field(default_factory=Counter)  # spend per key over the whole run, micro-dollars
    key_days: int = 0  # (key, UTC day) pairs after the warm-up with at least one request
    days: float = 0.0

    @classmethod
    def from_records(cls, records: Iterable[Any], warmup_days: float = 7) -> Directory:
        """Build from gateway events (outcome events are skipped)."""
        from spendwatch.schemas.event import GatewayEvent

        events = [r for r in records if isinstance(r, GatewayEvent)]
        if not events:
            now = datetime.now(UTC)
            return cls(start=now, end=now)
        first = min(e.event_time for e in events)
        start = first.replace(hour=0, minute=0, second=0, microsecond=0)
        end = max(e.event_time for e in events)
        directory = cls(start=start, end=end, days=(end - start).total_seconds() / 86_400)
        warm = start + timedelta(days=warmup_days)
        active: set[tuple[str, object]] = set()
        for event in events:
            key = event.scope_value("key")
            if key is None:
                continue
            directory.key_requests[key] += 1
            if event.cost_usd:
                directory.key_micros[key] += int(event.cost_usd * 1_000_000)
            if event.api_key_alias:
                directory.aliases.setdefault(event.api_key_alias, key)
            if event.team:
                directory.key_team.setdefault(key, event.team)
            if event.user:
                directory.key_user.setdefault(key, event.user)
            if event.org:
                directory.key_org.setdefault(key, event.org)
            if event.session_id:
                directory.session_key.setdefault(event.session_id, key)
            if event.event_time >= warm:
                active.add((key, event.event_time.date()))
        directory.key_days = len(active)
        return directory

    def key_hash(self, name: str) -> str | None:
        if name in self.key_requests or name in self.key_team:
            return name
        return self.aliases.get(name)

    def alias_of(self, key: str) -> str:
        for alias, value in self.aliases.items():
            if value == key:
                return alias
        return key


def _subjects(label: IncidentLabel, directory: Directory) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(direct, related) sets of (scope, subject) that a page on counts for this label."""
    direct: set[tuple[str, str]] = set()
    related: set[tuple[str, str]] = set()
    keys: list[str] = []
    if label.session:
        direct.add(("session", label.session))
        key = directory.session_key.get(label.session)
        keys = [key] if key else []
    elif label.key:
        key = directory.key_hash(label.key)
        keys = [key] if key else []
    if keys:
        for key in keys:
            direct.add(("key", key))
            if user := directory.key_user.get(key):
                direct.add(("user", user))
            if team := directory.key_team.get(key):
                related.add(("team", team))
            if org := directory.key_org.get(key):
                related.add(("org", org))
    if label.team:
        direct.add(("team", label.team))
        members = [k for k, t in directory.key_team.items() if t == label.team]
        member_subjects = {("key", k) for k in members} | {("user", directory.key_user[k]) for k in members
                                                          if k in directory.key_user}
        (related if label.family == "budget_overrun" else direct).update(member_subjects)
        related.update(("org", directory.key_org[k]) for k in members if k in directory.key_org)
    return direct, related


def _get(alert: Any, name: str) -> Any:
    return alert.get(name) if isinstance(alert, Mapping) else getattr(alert, name)


def _fired(alert: Any) -> datetime:
    value = _get(alert, "fired_at")
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _action(alert: Any) -> str:
    value = _get(alert, "action")
    return getattr(value, "value", value)


def evaluate(labels: list[IncidentLabel], alerts: Iterable[Any], directory: Directory, *, warmup_days: float = 7,
             before: timedelta = DEFAULT_BEFORE, after: timedelta = DEFAULT_AFTER,
             detectors: Iterable[str] = ()) -> dict[str, Any]:
    """Score notifications (``Alert`` models or their JSON dicts; resolves are ignored) against ``labels``.

    Returns one JSON-ready dict: ``families`` (per family: found, total, recall, time to detect
    median and worst in minutes, first detectors and the named detector's share of firsts),
    ``incidents`` (one row per label), ``false_pages`` (count, key-days, per 100 key-days, by
    detector, examples) and ``pages`` (triggers and false triggers per detector).
    """
    notifications = sorted((a for a in alerts if _action(a) in ("trigger", "repeat")), key=_fired)
    triggers = [a for a in notifications if _action(a) == "trigger"]
    warm = directory.start + timedelta(days=warmup_days)
    resolved = [(label, *_subjects(label, directory)) for label in labels]
    incidents = []
    for label, direct, _ in resolved:
        low, high = label.start - before, label.end + after
        first = next((a for a in notifications if low <= _fired(a) <= high
                      and (_get(a, "scope"), _get(a, "subject")) in direct
                      and not _explained_by_another(a, label, resolved, before, after)), None)
        row: dict[str, Any] = {"family": label.family, "subject": label.subject, "start": label.start.isoformat(),
                               "end": label.end.isoformat(), "detail": label.detail, "found": first is not None,
                               "resolved": _resolved(label, directory)}
        if first is not None:
            row["ttd_minutes"] = round(max(0.0, (_fired(first) - label.start).total_seconds() / 60), 1)
            row["first_detector"] = _get(first, "detector")
            row["first_summary"] = _get(first, "summary") if _has(first, "summary") else ""
        incidents.append(row)

    false: list[Any] = []
    pages: dict[str, Counter[str]] = defaultdict(Counter)
    for name in detectors:
        pages[name]["triggers"] += 0
    for alert in triggers:
        detector = _get(alert, "detector")
        pages[detector]["triggers"] += 1
        fired = _fired(alert)
        if fired < warm:
            continue
        subject = (_get(alert, "scope"), _get(alert, "subject"))
        if any(label.start - before <= fired <= label.end + after and (subject in direct or subject in related)
               for label, direct, related in resolved):
            continue
        pages[detector]["false"] += 1
        false.append(alert)

    families: dict[str, Any] = {}
    for family in sorted({label.family for label in labels} | set(FAMILY_DETECTORS)):
        rows = [r for r in incidents if r["family"] == family]
        if not rows:
            continue
        families[family] = summarize_family(family, rows)
    key_days = directory.key_days
    examples = []
    for alert in false[:200]:
        scope, subject = _get(alert, "scope"), _get(alert, "subject")
        examples.append({"detector": _get(alert, "detector"), "fired_at": _fired(alert).isoformat(), "scope": scope,
                         "subject": directory.alias_of(subject) if scope == "key" else subject,
                         "key_requests_per_day": round(directory.key_requests.get(subject, 0) / max(directory.days, 1),
                                                       1) if scope == "key" else None,
                         "key_usd_per_day": round(directory.key_micros.get(subject, 0) / 1e6 / max(directory.days, 1),
                                                  2) if scope == "key" else None,
                         "summary": _get(alert, "summary") if _has(alert, "summary") else ""})
    return {
        "warmup_days": warmup_days,
        "families": families,
        "incidents": incidents,
        "false_pages": {
            "count": len(false), "key_days": key_days,
            "per_100_key_days": round(100 * len(false) / key_days, 2) if key_days else None,
            "by_detector": dict(Counter(_get(a, "detector") for a in false).most_common()),
            "examples": examples,
        },
        "pages": {name: {"triggers": c["triggers"], "false": c["false"]} for name, c in sorted(pages.items())},
    }


def _explained_by_another(alert: Any, label: IncidentLabel,
                          resolved: list[tuple[IncidentLabel, set[tuple[str, str]], set[tuple[str, str]]]],
                          before: timedelta, after: timedelta) -> bool:
    """Whether ``alert`` is another label's own page rather than a detection of ``label``.

    A page from another family's named detector, on a subject of that family's label and in its
    window (a team's mix-drift page while one of its keys drifts, during the team's budget
    overrun), detects that label, not this one. Pages of this label's own named detector always count.
    """
    detector = _get(alert, "detector")
    if detector == FAMILY_DETECTORS.get(label.family):
        return False
    fired = _fired(alert)
    subject = (_get(alert, "scope"), _get(alert, "subject"))
    return any(other is not label and other.family != label.family
               and FAMILY_DETECTORS.get(other.family) == detector
               and other.start - before <= fired <= other.end + after
               and (subject in direct or subject in related)
               for other, direct, related in resolved)


def _resolved(label: IncidentLabel, directory: Directory) -> bool:
    """Whether the label's subject appears in the events at all (an unknown one is reported, and missed)."""
    if label.session:
        return label.session in directory.session_key
    if label.key:
        return directory.key_hash(label.key) is not None
    return label.team in directory.key_team.values()


def _has(alert: Any, name: str) -> bool:
    return name in alert if isinstance(alert, Mapping) else hasattr(alert, name)


def summarize_family(family: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Found/total, time to detect and first detectors over incident rows of one family."""
    found = [r for r in rows if r["found"]]
    ttds = sorted(r["ttd_minutes"] for r in found)
    firsts = Counter(r["first_detector"] for r in found)
    named = FAMILY_DETECTORS.get(family)
    return {
        "found": len(found), "total": len(rows), "recall": round(len(found) / len(rows), 3),
        "ttd_median_minutes": round(statistics.median(ttds), 1) if ttds else None,
        "ttd_worst_minutes": ttds[-1] if ttds else None,
        "first": dict(firsts.most_common()),
        "named_detector": named,
        "named_first_share": round(firsts.get(named, 0) / len(found), 3) if found and named else None,
    }


def aggregate(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool several runs' reports (one per seed): families over all incidents, false pages over all key-days."""
    incidents = [row for report in reports for row in report["incidents"]]
    families = {}
    for family in sorted({r["family"] for r in incidents}):
        families[family] = summarize_family(family, [r for r in incidents if r["family"] == family])
        families[family]["recall_per_run"] = [
            report["families"][family]["recall"] if family in report["families"] else None for report in reports]
    false = sum(r["false_pages"]["count"] for r in reports)
    key_days = sum(r["false_pages"]["key_days"] for r in reports)
    by_detector: Counter[str] = Counter()
    pages: dict[str, Counter[str]] = defaultdict(Counter)
    for report in reports:
        by_detector.update(report["false_pages"]["by_detector"])
        for name, counts in report["pages"].items():
            pages[name].update(counts)
    return {
        "runs": len(reports),
        "families": families,
        "false_pages": {
            "count": false, "key_days": key_days,
            "per_100_key_days": round(100 * false / key_days, 2) if key_days else None,
            "per_100_key_days_per_run": [r["false_pages"]["per_100_key_days"] for r in reports],
            "by_detector": dict(by_detector.most_common()),
        },
        "pages": {name: dict(c) for name, c in sorted(pages.items())},
    }


def _minutes(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.0f}m"
    if value < 48 * 60:
        return f"{value / 60:.1f}h"
    return f"{value / 1440:.1f}d"


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table (fits 80 columns) of a report from :func:`evaluate` or :func:`aggregate`."""
    lines = [f"{'family':<16}{'found':>8}{'recall':>7}{'ttd med':>8}{'worst':>7}{'named':>6}  first to page"]
    for family, row in report["families"].items():
        share = row["named_first_share"]
        named = "-" if share is None else f"{share:.0%}"
        head = (f"{family:<16}{row['found']:>4}/{row['total']:<3}{row['recall']:>7.0%}"
                f"{_minutes(row['ttd_median_minutes']):>8}{_minutes(row['ttd_worst_minutes']):>7}{named:>6}  ")
        firsts = ", ".join(f"{name} {count}" for name, count in row["first"].items()) or "-"
        if len(head) + len(firsts) > 80:
            firsts = firsts[:80 - len(head) - 1] + "~"
        lines.append(head + firsts)
        if row.get("recall_per_run") and len(row["recall_per_run"]) > 1:
            spread = " ".join("-" if r is None else f"{r:.0%}" for r in row["recall_per_run"])
            lines.append(f"{'':<16}  recall per run: {spread}"[:80])
    fp = report["false_pages"]
    rate = "-" if fp["per_100_key_days"] is None else f"{fp['per_100_key_days']:.2f}"
    lines.append(f"false pages: {fp['count']} over {fp['key_days']:,} key-days after warm-up = {rate} per 100 "
                 "key-days")
    if fp.get("per_100_key_days_per_run"):
        lines.append("  per run: " + " ".join(f"{r:.2f}" if r is not None else "-"
                                              for r in fp["per_100_key_days_per_run"]))
    if fp["by_detector"]:
        lines.append("  by detector: " + ", ".join(f"{name} {count}" for name, count in fp["by_detector"].items()))
    lines.append("pages per detector (triggers / false): " + ", ".join(
        f"{name} {c.get('triggers', 0)}/{c.get('false', 0)}" for name, c in report["pages"].items()))
    return "\n".join(_wrap(line) for line in lines)


def _wrap(line: str, width: int = 80) -> str:
    if len(line) <= width:
        return line
    out, current = [], ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = "    " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return "\n".join(out)
