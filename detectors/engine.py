"""The detector engine: the one implementation the stream workers and the backtest share.

Pure: no I/O, no wall clock, no randomness. Records are routed to *subject states*
(``"key:<hash>"``, ``"team:<name>"``...); each state sees only its own records in
event-time order, interleaved with clock ticks at multiples of :attr:`Engine.tick_interval`,
so its alerts depend only on (its records, the tick boundaries) -- that is what makes
the backtest page exactly as the stream would.

>>> from datetime import UTC, datetime
>>> from decimal import Decimal
>>> from spendwatch.detectors.config import DetectorsConfig
>>> from spendwatch.schemas.event import GatewayEvent
>>> engine = Engine(DetectorsConfig())
>>> event = GatewayEvent(event_id="e1", event_time=datetime(2026, 11, 23, 9, tzinfo=UTC), gateway="litellm",
...                      api_key_hash="k1", team="ml", model="gpt-4o", cost_usd=Decimal("3000"))
>>> engine.routes(event)
['key:k1', 'team:ml']
>>> state = engine.new_state("key:k1")
>>> [(a.detector, a.action.value) for a in engine.process(state, event)]
[('spend_spike', 'trigger'), ('burn_rate', 'trigger')]
>>> restored = engine.loads(engine.dumps(state))
>>> restored.baseline.running_24h == state.baseline.running_24h
True
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation
from spendwatch.detectors.baseline import RING_HOURS, SpendBaseline
from spendwatch.detectors.contributors import Contributors
from spendwatch.detectors.episodes import Episode, EpisodeBook, episode_dedup_key
from spendwatch.detectors.observation_wire import from_row, request_row
from spendwatch.detectors.snapshot import restore
from spendwatch.schemas.alert import Action, Alert, RootCause, SeriesPoint, Severity
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.outcome import OutcomeEvent

if TYPE_CHECKING:
    from collections.abc import Iterable

    from spendwatch.detectors.config import DetectorsConfig, DetectorSettings

    Record = GatewayEvent | OutcomeEvent

#: 2: a tuple of the state's parts as plain tuples and dicts (each class's ``__getstate__``), not the pickled
#: objects; contributor counters as plain dicts. Version 1 snapshots (the pickled SubjectState) still load:
#: the classes whose layout changed convert their old state in ``__setstate__``.
SNAPSHOT_VERSION = 2
_LOADABLE_VERSIONS = frozenset({1, SNAPSHOT_VERSION})
_ROUTE_CACHE_LIMIT = 100_000
_UNSEEN = object()
_NO_DETECTORS: frozenset[str] = frozenset()


@dataclass(slots=True)
class SubjectState(Context):
    """Everything kept for one state key: shared context, detectors, active episodes."""

    key: str = ""
    detectors: dict[str, Detector] | None = None
    episodes: EpisodeBook | None = None
    last_ts: float = 0.0
    identity: tuple[str | None, ...] = ()  # the last record's (key, alias, user, team, org), to skip label updates


def _load_class(path: str) -> type[Detector]:
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def observe(record: Record) -> Observation:
    """Flatten a record once for all detectors of all its states."""
    # exact-type test first: pydantic's metaclass makes isinstance() slow, and most records are requests
    if type(record) is not GatewayEvent and isinstance(record, OutcomeEvent):
        return Observation(
            kind="outcome", ts=record.event_time.timestamp(), cost_known=False, session_id=record.session_id,
            outcome_kind=record.kind, outcome_value=record.value, key_hash=record.api_key_hash, user=record.user,
            team=record.team, record_id=record.outcome_id,
        )
    return from_row(request_row(record))  # the row the stream's parse stage sends (detectors/observation_wire.py)


_LABEL_FIELDS = (("key_hash", "key_hash"), ("key_alias", "key_alias"), ("user", "user"), ("team", "team"),
                 ("org", "org"))
#: The identity labels that describe a subject of a wider scope: a team's page names the team
#: and org, not the key or user of whichever request last reached the team's state.
_SCOPE_LABELS = {"team": frozenset({"team", "org"}), "org": frozenset({"org"}),
                 "user": frozenset({"user", "team", "org"})}


class Engine:
    """Routes records to subject states and runs every enabled detector on them."""

    def __init__(self, config: DetectorsConfig) -> None:
        self.config = config
        self.tick_interval = timedelta(seconds=config.tick_interval_seconds)
        self._idle_tick = config.idle_tick_seconds
        self.settings: dict[str, DetectorSettings] = {
            name: s for name, s in config.detector_settings().items() if s.enabled
        }
        self.classes: dict[str, type[Detector]] = {
            name: _load_class(s.implementation) for name, s in self.settings.items()
        }
        self.scopes: tuple[str, ...] = tuple(
            dict.fromkeys(scope for name, s in self.settings.items() for scope in self._candidate_scopes(name, s))
        )
        #: record kind -> the detectors that want it, None for a kind every detector wants (no test per record)
        self._detectors_of_kind: dict[str, frozenset[str] | None] = {
            kind: None if all(kind in cls.kinds for cls in self.classes.values())
            else frozenset(name for name, cls in self.classes.items() if kind in cls.kinds)
            for kind in {kind for cls in self.classes.values() for kind in cls.kinds}
        }
        self._route_cache: dict[tuple[str, str], str | None] = {}  # (scope, subject) -> state key, None: no detector
        self._last_record: Any = None
        self._last_obs: Observation | None = None

    @staticmethod
    def _candidate_scopes(name: str, settings: DetectorSettings) -> Iterable[str]:
        extra = getattr(settings, "budget_scopes", ())
        return (*settings.scopes, *extra)

    # -- routing -----------------------------------------------------------------------
    def routes(self, record: Record) -> list[str]:
        """The state keys this record updates, e.g. ``["key:<hash>", "team:ml-platform"]``."""
        keys = []
        cache = self._route_cache
        for scope in self.scopes:
            value = record.scope_value(scope)
            if value is None:
                continue
            key = cache.get((scope, value), _UNSEEN)
            if key is _UNSEEN:
                wanted = any(cls.applies_to(self.settings[n], scope, value) for n, cls in self.classes.items())
                key = f"{scope}:{value}" if wanted else None
                if len(cache) >= _ROUTE_CACHE_LIMIT:
                    cache.clear()
                cache[(scope, value)] = key
            if key is not None:
                keys.append(key)
        return keys

    # -- state ---------------------------------------------------------------------------
    def new_state(self, state_key: str) -> SubjectState:
        scope, _, subject = state_key.partition(":")
        b = self.config.baseline
        state = SubjectState(
            scope=scope, subject=subject,
            baseline=SpendBaseline(profile_alpha=b.profile_alpha, min_history_days=b.min_history_days),
            contributors=Contributors(b.top_n), labels={}, key=state_key, detectors={}, episodes=EpisodeBook(),
        )
        for name, cls in self.classes.items():
            settings = self.settings[name]
            if cls.applies_to(settings, scope, subject):
                state.detectors[name] = cls(settings, b, scope, subject)
        return state

    def dumps(self, state: SubjectState) -> bytes:
        """Compact snapshot of one state (configs are not included).

        The state's own objects go in as the tuples and dicts of their ``__getstate__``: pickling
        an object costs a class lookup and a call, several times what its plain contents cost.
        """
        episodes = {key: (e.started, e.last_notified, e.last_abnormal, e.peak, e.notifications)
                    for key, e in state.episodes.active.items()}  # type: ignore[union-attr]
        detectors = {name: (self.settings[name].implementation, det.__getstate__())
                     for name, det in state.detectors.items()}  # type: ignore[union-attr]
        payload = (state.key, state.scope, state.subject, state.labels, state.last_ts, state.identity,
                   state.baseline.__getstate__(), state.contributors.__getstate__(), episodes, detectors)
        return pickle.dumps((SNAPSHOT_VERSION, payload), protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> SubjectState:
        """Restore a snapshot made by :meth:`dumps` (trusted data: our own state table), re-binding config."""
        version, state = pickle.loads(data)  # noqa: S301 - snapshots are written by spendwatch itself
        if version not in _LOADABLE_VERSIONS:
            raise ValueError(f"snapshot version {version} is not one of {sorted(_LOADABLE_VERSIONS)}")
        if version >= 2:
            state = self._from_payload(state)
        b = self.config.baseline
        state.baseline.profile_alpha = b.profile_alpha
        state.baseline.min_history_days = b.min_history_days
        detectors = {}
        for name, cls in self.classes.items():
            settings = self.settings[name]
            if not cls.applies_to(settings, state.scope, state.subject):
                continue
            det = state.detectors.get(name)
            if det is None:
                det = cls(settings, b, state.scope, state.subject)
            else:
                det.bind(settings, b)
            detectors[name] = det
        state.detectors = detectors
        for name, episode in [k for k in state.episodes.active if k[0] not in detectors]:  # type: ignore[union-attr]
            del state.episodes.active[(name, episode)]  # type: ignore[union-attr]  # detector since disabled
        state.normal_findings = bool(state.episodes.active)  # a version 1 state predates the field
        return state

    def _from_payload(self, payload: tuple[Any, ...]) -> SubjectState:
        """The state of a version 2 snapshot; its detectors still to be bound to the config."""
        key, scope, subject, labels, last_ts, identity, baseline, contributors, episodes, detectors = payload
        state = SubjectState(
            scope=scope, subject=subject, baseline=restore(SpendBaseline, baseline),
            contributors=restore(Contributors, contributors), labels=labels, key=key, detectors={},
            episodes=EpisodeBook(), last_ts=last_ts, identity=identity,
        )
        state.episodes.active = {k: Episode(*e) for k, e in episodes.items()}  # type: ignore[union-attr]
        for name, (implementation, det_state) in detectors.items():
            settings = self.settings.get(name)
            if settings is not None and settings.implementation == implementation:  # else: its state is not ours
                state.detectors[name] = restore(self.classes[name], det_state)  # type: ignore[index]
        return state

    # -- processing --------------------------------------------------------------------
    def _observe(self, record: Record) -> Observation:
        if record is not self._last_record:
            self._last_obs = observe(record)
            self._last_record = record
        return self._last_obs  # type: ignore[return-value]

    def process(self, state: SubjectState, record: Record | Observation) -> list[Alert]:
        """Learn one record of this state and return the notifications it causes.

        ``record`` may also be its :class:`Observation`, made once for every state it updates.
        """
        obs = record if type(record) is Observation else self._observe(record)
        ts = obs.ts
        if ts > state.last_ts:
            state.last_ts = ts
        identity = (obs.key_hash, obs.key_alias, obs.user, obs.team, obs.org)
        if identity != state.identity:
            self._relabel(state, identity)
        kind = obs.kind
        if kind == "request":
            state.baseline.learn_one(ts, obs.cost)
            state.contributors.add(obs)
        alerts: list[Alert] = []
        active = state.episodes.active  # type: ignore[union-attr]
        # a detector's normal finding only matters to an episode of its own, opened before this record
        state.normal_findings = bool(active)
        wanted = self._detectors_of_kind.get(kind, _NO_DETECTORS)  # None: every detector
        for name, det in state.detectors.items():  # type: ignore[union-attr]
            if wanted is not None and name not in wanted:
                continue
            det.learn_one(obs, state)
            findings = det.score_one(state, ts, obs)
            if not findings:
                continue
            if not active:
                # all normal with nothing open (the common case): _lifecycle would skip every finding
                for finding in findings:
                    if finding.abnormal:
                        break
                else:
                    continue
            self._lifecycle(state, name, det, findings, ts, alerts, complete=False)
        return alerts

    @staticmethod
    def _relabel(state: SubjectState, identity: tuple[str | None, ...]) -> None:
        state.identity = identity
        labels = state.labels
        allowed = _SCOPE_LABELS.get(state.scope)
        for (_, label), value in zip(_LABEL_FIELDS, identity, strict=True):
            if value is not None and (allowed is None or label in allowed):
                labels[label] = value

    def tick(self, state: SubjectState, now: datetime) -> list[Alert]:
        """Advance this state's clock to ``now`` (a tick boundary): windows roll, episodes repeat or resolve.

        Call it for every state at every boundary. For a subject with no active episode it returns at
        once, except at multiples of ``idle_tick_seconds`` where it scores the detectors whose condition
        can change with time alone (``Detector.idle_tick``). The decision depends only on the state and
        ``now``, so stream and backtest stay identical.
        """
        ts = now.timestamp()
        if ts < state.last_ts:
            return []
        alerts: list[Alert] = []
        state.normal_findings = bool(state.episodes.active)  # type: ignore[union-attr]
        if state.episodes.active:  # type: ignore[union-attr]
            state.last_ts = ts
            state.baseline.advance(ts)
            for name, det in state.detectors.items():  # type: ignore[union-attr]
                self._lifecycle(state, name, det, det.score_one(state, ts, None), ts, alerts, complete=True)
        elif not int(ts) % self._idle_tick:
            # quiet subject: only detectors whose condition can change with time alone; the others'
            # windows roll lazily on the next record (their state does not depend on when that happens)
            for name, det in state.detectors.items():  # type: ignore[union-attr]
                if det.idle_tick:
                    state.last_ts = ts
                    state.baseline.advance(ts)
                    self._lifecycle(state, name, det, det.score_one(state, ts, None), ts, alerts, complete=True)
        return alerts

    def needs_idle_ticks(self, state: SubjectState) -> bool:
        """Whether ticks can matter to this state while it has no active episode (see :meth:`tick`)."""
        return any(det.idle_tick for det in state.detectors.values())  # type: ignore[union-attr]

    def _lifecycle(
        self, state: SubjectState, name: str, det: Detector, findings: Iterable[Finding], ts: float,
        alerts: list[Alert], *, complete: bool,
    ) -> None:
        settings = det.config
        repeat_s = settings.repeat_interval_minutes * 60
        resolve_s = settings.resolve_after_minutes * 60
        book = state.episodes
        seen = set() if complete else None
        for finding in findings:
            if seen is not None:
                seen.add(finding.episode)
            elif not finding.abnormal and not book.active:  # type: ignore[union-attr]
                continue  # the common case: normal, nothing open
            action, episode = book.update(  # type: ignore[union-attr]
                name, finding.episode, ts, finding.abnormal, repeat_s=repeat_s, resolve_s=resolve_s,
                observed=finding.observed,
            )
            if action is not None:
                alerts.append(self._alert(state, det, finding, action, episode.started, ts))  # type: ignore[union-attr]
        if seen is not None:
            for episode_id in book.episodes_of(name):  # type: ignore[union-attr]
                if episode_id in seen:
                    continue
                action, episode = book.update(  # type: ignore[union-attr]
                    name, episode_id, ts, False, repeat_s=repeat_s, resolve_s=resolve_s
                )
                if action is not None:
                    finding = Finding(abnormal=False, observed=0.0, episode=episode_id,
                                      summary=f"{name} back to normal for {_display_name(state)}")
                    alerts.append(self._alert(state, det, finding, action, episode.started, ts))  # type: ignore[union-attr]

    # -- alerts --------------------------------------------------------------------------
    def _alert(
        self, state: SubjectState, det: Detector, finding: Finding, action: str, started: float, ts: float
    ) -> Alert:
        labels = {**state.labels, **finding.labels}
        summary = finding.summary
        if action == "resolve" and not summary:
            now_vs = f"now {finding.observed:,.2f} {finding.unit}"
            if finding.expected is not None:
                now_vs += f" (expected {finding.expected:,.2f})"
            summary = f"{det.name} on {_display_name(state)} back to normal: {now_vs}"
        summary = summary or f"{det.name} on {_display_name(state)}"
        if action == "resolve" and not summary.startswith("Resolved"):
            summary = f"Resolved: {summary}"
        return Alert(
            action=Action(action),
            detector=det.name,
            scope=state.scope,
            subject=state.subject,
            fired_at=datetime.fromtimestamp(ts, UTC),
            severity=Severity(finding.severity or det.config.severity),
            summary=summary[:1024],
            observed=finding.observed,
            expected=finding.expected,
            unit=finding.unit,
            dedup_key=episode_dedup_key(det.name, state.scope, state.subject, finding.episode, started),
            episode_started_at=datetime.fromtimestamp(started, UTC),
            labels=labels,
            root_cause=[] if action == "resolve" else self._root_cause(state, finding),
            series=self._series(state),
            details={**finding.details, **_episode_figures(state, started, ts)} if action == "resolve" else finding.details,
        )

    @staticmethod
    def _root_cause(state: SubjectState, finding: Finding, per_kind: int = 3) -> list[RootCause]:
        if finding.causes is not None:
            whole = max((cost for _kind, _name, cost, _requests in finding.causes), default=0) or 1
            return [RootCause(kind=kind, name=name, cost_usd=Decimal(cost) / MICROS, share=min(1.0, cost / whole),
                              requests=requests) for kind, name, cost, requests in finding.causes]
        window = state.contributors.day if finding.window == "day" else state.contributors.short
        causes = []
        for kind in finding.root_cause_kinds:
            totals = window.totals(kind)
            whole = sum(c for _, c, _ in totals) or 1
            for name, cost, requests in totals[:per_kind]:
                causes.append(RootCause(kind=kind, name=name, cost_usd=Decimal(cost) / MICROS,
                                        share=min(1.0, cost / whole), requests=requests))
        return causes

    @staticmethod
    def _series(state: SubjectState) -> list[SeriesPoint]:
        return [
            SeriesPoint(start=start, spend_usd=Decimal(spent) / MICROS,
                        baseline_usd=None if expected is None else Decimal(round(expected)) / MICROS)
            for start, spent, expected in state.baseline.hourly_series(24)
        ]


def _display_name(state: SubjectState) -> str:
    """``key <alias>`` when the key has one (a 64-hex hash is no name for a person), else ``<scope> <subject>``."""
    alias = state.labels.get("key_alias") if state.scope == "key" else None
    return f"key {alias}" if alias else f"{state.scope} {state.subject}"


def _episode_figures(state: SubjectState, started: float, now: float) -> dict[str, Any]:
    """What an episode lasted and what its subject spent meanwhile, for the resolve (hourly buckets: the hours
    the episode touched, at most the baseline's ring)."""
    first_hour = int(started // 3600)
    hours = max(1, min(state.baseline.hour_index - first_hour + 1, RING_HOURS))
    spent = sum(micros for _, micros, _ in state.baseline.hourly_series(hours))
    return {"episode_minutes": round(max(0.0, now - started) / 60, 1),
            "episode_spend_usd": str(Decimal(spent) / MICROS), "episode_spend_hours": hours}
