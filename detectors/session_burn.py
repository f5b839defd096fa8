"""session_burn: one session (agent run, conversation, trace) burning in under an hour far more than any before.

X is ``threshold_usd`` when set. Otherwise it scales with the subject's own sessions: each
completed session is one sample -- the most it spent within ``window_minutes`` -- and X is

    max(min_usd, history_factor x (1 + prior_sessions / n) x M)

where ``M`` is the highest such spend of the ``n`` completed sessions (a maximum that halves every
``history_half_life_hours``, so an old big session fades) and ``floor_usd`` until ``min_sessions``
have completed. The evidence scales with the subject: a sparse key whose sessions never passed
$0.30 pages on a $10 burn, a frontier-heavy agent key whose long sessions reach $20 needs $100+
within the hour, and a key with ten sessions needs twice the factor of one with hundreds (its
maximum is a poorer estimate of how big an ordinary session gets). Why the maximum and not a
quantile: a key's session costs are a mixture (one model per session, economy to frontier,
log-normal lengths), so a high quantile of a few dozen sessions is its maximum anyway (the
second-highest, tried against one outlier holding the bar up, paged a new key's ordinary $8
session in the incident replay of tests/test_backtest_incidents.py).

Dollars are work (tokens) times price, and the key's price mix is part of its ordinary life: an
agent key that runs an occasional frontier session spends 5-60x its economy sessions on the same
work. So a session must also pass, in dollars, ``work_factor x (1 + prior_sessions / n) x T``
tokens at its own price, where ``T`` is the most tokens (input, cached included, and output) any
completed session sent and received within the window (a decayed maximum): a long session of the
key's usual size on a model the key uses is not a burn (a key moving to pricier models is
model_mix_drift's page). On a model pricier than any the key used (input price above ``P``, the
priciest model of its completed sessions, decayed alike) the work is priced at ``P``: a burn on
a key that never touched a frontier model is judged by its dollars. Without tokens (a gateway
that reports none) only the dollars count. Why work and not call count or call rate: a burn's
calls come at an agent's ordinary pace, and a batch job's hundreds of cheap calls are not one.

A session that paged is learned as if it had spent X (the limit it crossed), in dollars and in
tokens, and does not make its model's price a known one: a real burn does not hide the next
one, while an ordinary job that pages raises the bar ``history_factor``-fold and stops paging.

It also pages early, on pace: a session at least 5 minutes old that spent ``pace_fraction`` of X
(and at least ``min_usd``) within its last 10 minutes. A session that spends slowly for hours is runaway_loop's business.

Why per subject and not one org-wide distribution: the determinism contract says a state sees
only its own records, so an org-wide distribution would need its own ``org:<org>`` state that
sees every request of the org (one hot state per org, on one partition) and could only page at
org scope. Users who want one org-wide X set ``threshold_usd``.

A session is live while it has spent within the window; it completes (and feeds the
history) once idle for ``window_minutes``. At most ``max_tracked_sessions`` live
sessions are kept per subject; the least recently active is completed early.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd
from spendwatch.detectors.snapshot import restore_quantile
from spendwatch.schemas.pricing import input_micros_per_token

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
    __slots__ = ("last_ts", "started", "peak", "buckets", "models", "flagged", "work_peak", "work", "flagged_work",
                 "price")

    def __init__(self, ts: float) -> None:
        self.last_ts = ts
        self.started = ts
        self.peak = 0
        self.buckets: dict[int, int] = {}  # bucket index -> micro-dollars
        self.models: dict[str, list[int]] = {}  # model -> [micro-dollars, requests]
        self.flagged = 0  # the limit it crossed when it paged (0: never paged)
        self.work_peak = 0
        self.work: dict[int, int] = {}  # bucket index -> tokens (input, cached included, and output)
        self.flagged_work = 0  # the work limit when it paged
        self.price = 0.0  # the highest input price of its models, micro-dollars per token (0: none known)

    @classmethod
    def restore(cls, last_ts: float, started: float, peak: int, buckets: dict[int, int],
                models: dict[str, list[int]], flagged: int = 0, work_peak: int = 0,
                work: dict[int, int] | None = None, flagged_work: int = 0, price: float = 0.0) -> _Session:
        """A session from its snapshot tuple (one from before the work history has no tokens)."""
        session = cls.__new__(cls)
        session.last_ts, session.started, session.peak, session.buckets, session.models, session.flagged = (
            last_ts, started, peak, buckets, models, flagged)
        session.work_peak, session.work, session.flagged_work = work_peak, {} if work is None else work, flagged_work
        session.price = price
        return session


def _decayed(peak: tuple[float, float | None], now: float, half_life_s: float) -> float:
    """A decayed maximum ``(value, when)`` as seen at ``now`` (``when`` None: undated, not decayed).

    >>> _decayed((100.0, 0.0), 7 * 86400, 7 * 86400), _decayed((100.0, None), 1e9, 3600)
    (50.0, 100.0)
    """
    value, when = peak
    if when is None:
        return value
    return value * 0.5 ** (max(0.0, now - when) / half_life_s)


def _raised(peak: tuple[float, float | None], value: float, now: float, half_life_s: float) -> tuple[float, float]:
    """The decayed maximum ``peak`` after seeing ``value`` at ``now``.

    >>> _raised((100.0, 0.0), 10.0, 7 * 86400, 7 * 86400), _raised((100.0, 0.0), 80.0, 7 * 86400, 7 * 86400)
    ((50.0, 604800), (80.0, 604800))
    """
    known = _decayed(peak, now, half_life_s)
    return (float(value), now) if value >= known else (known, now)


class SessionBurn(Detector):
    """A single session's spend within ``window_minutes`` against $X, X scaled by the subject's own sessions.

    Examples
    --------
    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, SessionBurnConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {})
    >>> sessions = SessionBurn(SessionBurnConfig(), BaselineConfig(), "key", "k1")
    >>> t0 = 1_762_128_000.0
    >>> def spend(session, ts, dollars, model="claude-opus-4", detector=sessions, tokens=0):
    ...     obs = Observation("request", ts, cost=int(dollars * 1e6), session_id=session, model=model,
    ...                       input_tokens=tokens)
    ...     detector.learn_one(obs, ctx)
    ...     return detector.score_one(ctx, ts, obs)
    >>> [f.abnormal for f in spend("big-but-normal", t0, 45)]    # a new key: $45 is under the $50 floor
    [False]
    >>> for minute in range(0, 40, 2):                           # $3 every 2 minutes
    ...     findings = spend("runaway", t0 + minute * 60, 3)
    ...     if findings[0].abnormal:
    ...         break
    >>> minute, findings[0].episode, findings[0].summary
    (32, 'runaway', 'session runaway on key k1 spent $51.00 in 32 min (limit $50.00 per 60 min), mostly claude-opus-4')

    A sparse key whose 20 sessions never passed $0.80: X is 5 x (1 + 10/20) x $0.80 (a little
    decayed; these calls carry no tokens, so only the dollars count)

    >>> sparse = SessionBurn(SessionBurnConfig(), BaselineConfig(), "key", "k2")
    >>> for n in range(20):
    ...     _ = spend(f"s{n}", t0 + n * 7200, 0.3 + n % 3 * 0.25, "gpt-5-mini", sparse)
    >>> _ = spend("next", t0 + 40 * 3600, 0.01, "gpt-5-mini", sparse)
    >>> round(sparse.threshold() / 1e6, 2), sparse.completed
    (5.95, 20)
    >>> for minute in range(30):                                 # $0.50 of frontier calls a minute
    ...     findings = spend("burn", t0 + 41 * 3600 + minute * 60, 0.5, "claude-sonnet-4-5", sparse)
    ...     if findings[0].abnormal:
    ...         break
    >>> minute, findings[0].summary
    (9, 'session burn on key k1 spent $5.00 in 9 min (limit $5.84 per 60 min, on pace to pass it), mostly claude-sonnet-4-5')

    An agent key whose sessions do up to 2M tokens within the hour on gpt-5-mini ($0.50), one in five
    a short claude-opus-4-1 session (100k tokens, $1.50): X from the dollars is 5 x 1.5 x $1.50

    >>> def agent_key(subject):
    ...     agent = SessionBurn(SessionBurnConfig(), BaselineConfig(), "key", subject)
    ...     for n in range(20):
    ...         opus = n % 5 == 4
    ...         _ = spend(f"s{n}", t0 + n * 7200, 1.5 if opus else 0.5, "claude-opus-4-1" if opus else "gpt-5-mini",
    ...                   agent, 100_000 if opus else 2_000_000)
    ...     _ = spend("next", t0 + 40 * 3600, 0.01, "gpt-5-mini", agent, 1_000)
    ...     return agent
    >>> agent = agent_key("k3")
    >>> round(agent.threshold() / 1e6, 2)
    11.25

    A long opus session of the key's usual size (2M tokens, $30 within the hour: over $11.25) is its
    usual work on a model it uses: the limit is 2 x 1.5 x 2M tokens (decayed) at the session's price.
    A burn on the same key is not.

    >>> for minute in range(60):
    ...     findings = spend("long", t0 + 41 * 3600 + minute * 60, 0.5, "claude-opus-4-1", agent, 33_333)
    >>> findings[0].abnormal, findings[0].observed, round(findings[0].expected)
    (False, 30.0, 88)
    >>> agent = agent_key("k4")
    >>> for minute in range(60):
    ...     findings = spend("burn", t0 + 41 * 3600 + minute * 60, 5, "claude-opus-4-1", agent, 333_333)
    ...     if findings[0].abnormal:
    ...         break
    >>> minute, findings[0].summary
    (8, 'session burn on key k1 spent $45.00 in 8 min (limit $87.84 per 60 min, on pace to pass it), mostly claude-opus-4-1')
    """

    name = "session_burn"
    config: SessionBurnConfig

    def __init__(self, config: SessionBurnConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.sessions: dict[str, _Session] = {}
        #: the most a completed session spent within the window: (micro-dollars, when), decayed
        self.history: tuple[float, float | None] = (0.0, None)
        #: the most tokens a completed session sent and received within the window, decayed alike
        self.work_history: tuple[float, float | None] = (0.0, None)
        #: the highest input price (micro-dollars per token) of a completed session's models, decayed alike
        self.price_history: tuple[float, float | None] = (0.0, None)
        self.completed = 0

    # -- snapshots: sessions as tuples (see spendwatch.detectors.snapshot) ---------------------
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["sessions"] = {sid: (s.last_ts, s.started, s.peak, s.buckets, s.models, s.flagged, s.work_peak,
                                   s.work, s.flagged_work, s.price)
                             for sid, s in self.sessions.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        costs = state.pop("costs", None)
        state.setdefault("work_history", (0.0, None))  # a snapshot before the work history: none yet
        state.setdefault("price_history", (0.0, None))
        super().__setstate__(state)
        if costs is not None:  # a snapshot before the decayed maximum: its 99th percentile, undated
            quantile = restore_quantile(costs) if isinstance(costs, tuple) else costs
            self.history = (float(quantile.get() or 0.0), None)
        self.sessions = {sid: s if isinstance(s, _Session) else _Session.restore(*s)
                         for sid, s in self.sessions.items()}

    def derive(self) -> None:
        cfg = self.config
        self._cfg_bucket_s = max(1, cfg.window_minutes * 60 // _BUCKETS)
        self._cfg_floor = int(cfg.floor_usd * MICROS)
        self._cfg_min = int(cfg.min_usd * MICROS)
        self._cfg_fixed = None if cfg.threshold_usd is None else int(cfg.threshold_usd * MICROS)
        self._cfg_window_s = cfg.window_minutes * 60
        self._cfg_half_life_s = cfg.history_half_life_hours * 3600
        self._cfg_limit: int | None = None  # threshold() until the next session completes
        self._cfg_work_limit: float | None = None  # work_threshold() likewise

    # -- learning ------------------------------------------------------------------------
    def derived(self) -> bool:
        """Whether X comes from the subject's sessions (not ``threshold_usd``, nor ``floor_usd`` for a new subject)."""
        return self._cfg_fixed is None and self.completed >= self.config.min_sessions

    def threshold(self) -> int:
        """$X in micro-dollars."""
        limit = self._cfg_limit
        if limit is None:
            cfg = self.config
            if self._cfg_fixed is not None:
                limit = self._cfg_fixed
            elif self.derived():
                evidence = 1 + cfg.prior_sessions / self.completed
                limit = max(self._cfg_min, int(cfg.history_factor * evidence * self.history[0]))
            else:
                limit = self._cfg_floor
            self._cfg_limit = limit
        return limit

    def work_threshold(self) -> float:
        """The tokens within the window a session must pass, besides $X (0: no limit -- no tokens known)."""
        limit = self._cfg_work_limit
        if limit is None:
            cfg = self.config
            limit = 0.0
            if self.derived() and cfg.work_factor:
                limit = cfg.work_factor * (1 + cfg.prior_sessions / self.completed) * self.work_history[0]
            self._cfg_work_limit = limit
        return limit

    def _complete(self, session_id: str, now: float) -> None:
        session = self.sessions.pop(session_id)
        half_life_s = self._cfg_half_life_s
        spent = min(session.peak, session.flagged) if session.flagged else session.peak
        self.history = _raised(self.history, spent, now, half_life_s)
        work = session.work_peak
        if session.flagged:  # the tokens of the limit it crossed: its work limit, or X's dollars' worth at its price
            work = min(work, session.flagged_work) if session.flagged_work else int(
                work * min(1.0, session.flagged / session.peak))
        self.work_history = _raised(self.work_history, work, now, half_life_s)
        # a session that paged does not make its model's price one the subject is known to pay
        self.price_history = _raised(self.price_history, 0.0 if session.flagged else session.price, now, half_life_s)
        self.completed += 1
        self._cfg_limit = self._cfg_work_limit = None

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
            self._complete(oldest, ts)
        session = sessions.pop(session_id, None)  # re-inserted last: keeps the LRU order
        if session is None:
            if len(sessions) >= self.config.max_tracked_sessions:
                self._complete(next(iter(sessions)), ts)
            session = _Session(ts)
        sessions[session_id] = session
        if ts > session.last_ts:
            session.last_ts = ts
        b = int(ts) // self._cfg_bucket_s
        buckets = session.buckets
        buckets[b] = buckets.get(b, 0) + cost
        tokens = obs.input_tokens + obs.output_tokens
        if tokens:
            work = session.work
            work[b] = work.get(b, 0) + tokens
        model = session.models.get(obs.model)
        if model is not None:
            model[0] += cost
            model[1] += 1
        else:
            if len(session.models) < _MODELS_PER_SESSION:
                session.models[obs.model] = [cost, 1]
            price = input_micros_per_token(obs.model, obs.provider)
            if price > session.price:
                session.price = price

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
            self._complete(session_id, now)
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
        buckets, work = session.buckets, session.work
        if buckets and min(buckets) < oldest:  # min() in C: the scan below only when a bucket is stale
            for b in [b for b in buckets if b < oldest]:
                del buckets[b]
            for b in [b for b in work if b < oldest]:
                del work[b]
        spent = sum(buckets.values())
        if spent > session.peak:
            session.peak = spent
        tokens = sum(work.values())
        if tokens > session.work_peak:
            session.work_peak = tokens
        limit = self.threshold()
        work_limit = self.work_threshold()
        if work_limit and tokens and session.price:
            # as much work as the subject's biggest sessions, at this session's price -- or, on a model
            # pricier than any the subject used, at the priciest it used -- is no burn
            known = min(1.0, self.price_history[0] / session.price)
            limit = max(limit, int(work_limit * spent / tokens * known))
        # on pace only from min_usd: half of a $5 X is not a page
        burning = spent > limit or (spent >= self._cfg_min and self._on_pace(session, spent, limit, now))
        if not burning and not normal:
            return None
        finding = Finding(burning, spent / MICROS, limit / MICROS, episode=session_id)
        if finding.abnormal:
            if not session.flagged:
                session.flagged, session.flagged_work = limit, int(work_limit)
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
                               "derived": self.derived(), "history_max_usd": round(self.history[0] / MICROS, 2),
                               "history_max_tokens": int(self.work_history[0]), "window_tokens": tokens}
        return finding
