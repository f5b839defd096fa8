"""session_burn: one session (agent run, conversation, trace) burning more than $X in under an hour.

X is ``threshold_usd`` when set. Otherwise it is derived from the session costs the
subject has actually seen: ``max(floor_usd, quantile_factor x the quantile-th
percentile)`` of completed sessions' peak one-hour spend (``river.stats.Quantile``,
P² algorithm, constant memory), and just ``floor_usd`` until ``min_sessions`` sessions
have completed.

Why per subject and not one org-wide distribution: the determinism contract says a
state sees only its own records, so an org-wide distribution would need its own
``org:<org>`` state that sees every request of the org (one hot state per org, on one
partition) and could only page at org scope. A key is the unit that has an owner and
that the detector runs on; its own sessions are the sample of "normal" that matters for
it, and the absolute floor protects every key that has no history yet. Users who want
one org-wide X set ``threshold_usd``.

A session is live while it has spent within the window; it completes (and feeds the
distribution) once idle for ``window_minutes``. At most ``max_tracked_sessions`` live
sessions are kept per subject; the least recently active is completed early.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from river import stats

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd
from spendwatch.detectors.snapshot import quantile_state, restore_quantile

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, SessionBurnConfig

#: Each session's window is kept in this many buckets.
_BUCKETS = 12
_MODELS_PER_SESSION = 4
#: The recent pace is measured over this many buckets (10 minutes of the default hour).
_PACE_BUCKETS = 2
#: ... of a session at least this old (one expensive call is not a burn).
_PACE_MIN_AGE_S = 300


class _Session:
    __slots__ = ("last_ts", "started", "peak", "buckets", "models")

    def __init__(self, ts: float) -> None:
        self.last_ts = ts
        self.started = ts
        self.peak = 0
        self.buckets: dict[int, int] = {}  # bucket index -> micro-dollars
        self.models: dict[str, list[int]] = {}  # model -> [micro-dollars, requests]

    @classmethod
    def restore(cls, last_ts: float, started: float, peak: int, buckets: dict[int, int],
                models: dict[str, list[int]]) -> _Session:
        session = cls.__new__(cls)
        session.last_ts, session.started, session.peak, session.buckets, session.models = (
            last_ts, started, peak, buckets, models)
        return session


class SessionBurn(Detector):
    """A single session's spend within ``window_minutes`` against $X.

    Examples
    --------
    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, SessionBurnConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {})
    >>> sessions = SessionBurn(SessionBurnConfig(), BaselineConfig(), "key", "k1")
    >>> t0 = 1_762_128_000.0
    >>> def spend(session, ts, dollars, model="claude-opus-4"):
    ...     obs = Observation("request", ts, cost=int(dollars * 1e6), session_id=session, model=model)
    ...     sessions.learn_one(obs, ctx)
    ...     return sessions.score_one(ctx, ts, obs)
    >>> [f.abnormal for f in spend("big-but-normal", t0, 45)]    # $45: under the $50 floor
    [False]
    >>> for minute in range(0, 40, 2):                           # $3 every 2 minutes
    ...     findings = spend("runaway", t0 + minute * 60, 3)
    ...     if findings[0].abnormal:
    ...         break
    >>> minute, findings[0].episode, findings[0].summary
    (32, 'runaway', 'session runaway on key k1 spent $51.00 in 32 min (limit $50.00 per 60 min), mostly claude-opus-4')
    """

    name = "session_burn"
    config: SessionBurnConfig

    def __init__(self, config: SessionBurnConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.sessions: dict[str, _Session] = {}
        self.costs = stats.Quantile(config.quantile)  # completed sessions' peak window spend (micro-dollars)
        self.completed = 0

    # -- snapshots: sessions as tuples, the quantile as a tuple (see spendwatch.detectors.snapshot) ---
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["sessions"] = {sid: (s.last_ts, s.started, s.peak, s.buckets, s.models) for sid, s in self.sessions.items()}
        state["costs"] = quantile_state(self.costs)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if isinstance(self.costs, tuple):  # else: the objects themselves, from a snapshot before version 2
            self.costs = restore_quantile(self.costs)
            self.sessions = {sid: _Session.restore(*s) for sid, s in self.sessions.items()}

    def derive(self) -> None:
        cfg = self.config
        self._cfg_bucket_s = max(1, cfg.window_minutes * 60 // _BUCKETS)
        self._cfg_floor = int(cfg.floor_usd * MICROS)
        self._cfg_fixed = None if cfg.threshold_usd is None else int(cfg.threshold_usd * MICROS)
        self._cfg_window_s = cfg.window_minutes * 60
        self._cfg_limit: int | None = None  # threshold() until the next session completes

    # -- learning ------------------------------------------------------------------------
    def threshold(self) -> int:
        """$X in micro-dollars."""
        limit = self._cfg_limit
        if limit is None:
            if self._cfg_fixed is not None:
                limit = self._cfg_fixed
            elif self.completed >= self.config.min_sessions:
                limit = max(self._cfg_floor, int(self.config.quantile_factor * (self.costs.get() or 0)))
            else:
                limit = self._cfg_floor
            self._cfg_limit = limit
        return limit

    def _complete(self, session_id: str) -> None:
        session = self.sessions.pop(session_id)
        self.costs.update(session.peak)
        self.completed += 1
        self._cfg_limit = None

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        session_id, cost = obs.session_id, obs.cost
        if not session_id or not cost:
            return
        ts, sessions = obs.ts, self.sessions
        window_s = self._cfg_window_s
        while sessions:  # complete idle sessions (the dict is in LRU order: oldest first)
            oldest, idle = next(iter(sessions.items()))
            if ts - idle.last_ts < window_s:
                break
            self._complete(oldest)
        session = sessions.pop(session_id, None)  # re-inserted last: keeps the LRU order
        if session is None:
            if len(sessions) >= self.config.max_tracked_sessions:
                self._complete(next(iter(sessions)))
            session = _Session(ts)
        sessions[session_id] = session
        if ts > session.last_ts:
            session.last_ts = ts
        b = int(ts) // self._cfg_bucket_s
        buckets = session.buckets
        buckets[b] = buckets.get(b, 0) + cost
        model = session.models.get(obs.model)
        if model is not None:
            model[0] += cost
            model[1] += 1
        elif len(session.models) < _MODELS_PER_SESSION:
            session.models[obs.model] = [cost, 1]

    # -- scoring -------------------------------------------------------------------------
    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        if obs is not None:
            session = self.sessions.get(obs.session_id) if obs.session_id else None
            if session is None:
                return []
            finding = self._judge(ctx, obs.session_id, session, now, ctx.normal_findings)  # type: ignore[arg-type]
            return [] if finding is None else [finding]
        window_s = self._cfg_window_s
        for session_id in [s for s, sess in self.sessions.items() if now - sess.last_ts >= window_s]:
            self._complete(session_id)
        findings = [self._judge(ctx, sid, sess, now, normal=False) for sid, sess in self.sessions.items()]
        return [f for f in findings if f is not None]

    def _on_pace(self, session: _Session, spent: int, limit: int, now: float) -> bool:
        """Whether the session, at least ``_PACE_MIN_AGE_S`` old, spent ``pace_fraction`` of $X in its last 10 minutes."""
        fraction = self.config.pace_fraction
        if not fraction or spent < fraction * limit or session.last_ts - session.started < _PACE_MIN_AGE_S:
            return False
        recent = int(now) // self._cfg_bucket_s - _PACE_BUCKETS + 1
        return sum(v for b, v in session.buckets.items() if b >= recent) >= fraction * limit

    def _judge(self, ctx: Context, session_id: str, session: _Session, now: float, normal: bool) -> Finding | None:
        """The session's finding; None when it is normal and ``normal`` findings are not wanted."""
        # the session's spend over its window (buckets that left it are dropped)
        oldest = int(now) // self._cfg_bucket_s - _BUCKETS + 1
        buckets = session.buckets
        if buckets and min(buckets) < oldest:  # min() in C: the scan below only when a bucket is stale
            for b in [b for b in buckets if b < oldest]:
                del buckets[b]
        spent = sum(buckets.values())
        if spent > session.peak:
            session.peak = spent
        limit = self.threshold()
        burning = spent > limit or self._on_pace(session, spent, limit, now)
        if not burning and not normal:
            return None
        finding = Finding(burning, spent / MICROS, limit / MICROS, episode=session_id)
        if finding.abnormal:
            models = sorted(session.models.items(), key=lambda kv: -kv[1][0])
            window_start = max(session.started, now - self._cfg_window_s)
            minutes = max(1, round((session.last_ts - window_start) / 60))
            top = f", mostly {models[0][0]}" if models else ""
            pace = "" if spent > limit else ", on pace to pass it"
            finding.summary = (
                f"session {session_id} on {ctx.scope} {ctx.labels.get('key_alias') or ctx.subject} spent {usd(spent)} "
                f"in {minutes} min (limit {usd(limit)} per {self.config.window_minutes} min{pace}){top}"
            )
            finding.labels = {"session": session_id}
            finding.causes = [("session", session_id, spent, sum(m[1] for m in session.models.values())),
                              *(("model", name, cost, n) for name, (cost, n) in models)]
            finding.details = {"threshold_usd": limit / MICROS, "completed_sessions": self.completed,
                               "derived": self._cfg_fixed is None and self.completed >= self.config.min_sessions}
        return finding
