"""runaway_loop: one session that keeps calling, steadily and without a pause, long after sessions end.

session_burn asks "is one session spending a lot of money fast?"; this detector asks "is one
session *never stopping*?", whatever the model costs. An agent stuck in a loop retries the
same step for hours: its calls come at a steady cadence, its requests look alike (same model,
near-same input tokens: it makes no progress, so its context does not grow), and it goes on
long after the subject's ordinary sessions end.

A session's *run* is its successful calls since its last pause of ``pause_minutes`` or more
(failed calls are error_storm's business). A call is

* **steady** when its gap is within ``cadence_tolerance`` of the run's typical gap (an
  exponentially weighted mean of the log gaps), and
* **loop-like** when it is steady and repeats a request: the same model with input tokens within
  ``token_tolerance`` of both the previous call and the call ``_LAG`` calls earlier (an ordinary session's context grows
  call by call; a loop re-sends the same one) and output tokens within ``output_tolerance`` (the
  same request gets a similar answer; an ordinary session whose context sits at the model's limit
  does not ask the same thing every time).

A run's *loop score* gains 1 per loop-like call and loses 2 per other call (never below 0): it
grows only while more than two calls in three are loop-like, so the coincidences of a long
ordinary session never add up. A run pages, with evidence proportional to the subject's own
sessions (each completed run is one sample, whatever its length), once it has ``min_calls``
calls over ``min_minutes`` and either

* **loops**: its score reaches ``min_loop_calls`` or, once a completed run of this subject has
  scored that much, ``history_factor`` x the highest score of its completed runs (a decayed
  maximum, halving every ``history_half_life_hours``). An agent key's sessions score about 0,
  so a loop pages on its call ``min_loop_calls`` + 1 (the first has nothing to repeat), after
  ``min_loop_calls`` gaps: within minutes at 60 calls per 10 minutes, within 20-25 minutes at 2.
  Why 4 and not more: a slow loop's evidence comes one call every few minutes, so each call
  asked for costs minutes; 4 consecutive steady repeats (with a penalty of 2 per other call) are
  still rare in ordinary sessions, whose context grows call by call.
  A key whose nightly batch re-sends one prompt 1,000 times needs a loop longer than that. Or
* **never stops**: it is steady (at least half its calls) and has gone on longer than
  ``endless_hours`` and ``history_factor`` x the subject's longest completed run: the loop whose
  requests differ every time.

A run that paged is learned as it was when it paged: a weekend-long loop does not hide the next
one for weeks, while an ordinary job that pages (a new nightly batch re-sending one prompt) raises
the bar ``history_factor``-fold each time and stops paging within a few nights.

The page names the session, its model, calls, duration and what it costs per hour if it keeps
going; below ``min_usd_per_hour`` it is sent with ``low_spend_severity`` (a cheap loop is still a
loop, but not worth waking anyone). It resolves once the session pauses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, RunawayLoopConfig

#: A request repeats when its input matches the one this many calls earlier (an agent's context
#: grows by a few percent a call; a loop's does not grow at all).
_LAG = 8
#: Weight of the newest gap in the run's typical (log) gap.
_GAP_ALPHA = 0.2
#: The loop score (a CUSUM) gains 1 per loop-like call and loses this much per other call: it only
#: grows while more than 2 in 3 calls are loop-like, so a few coincidences in a long ordinary session
#: never add up.
_MISS_PENALTY = 2
#: A run that "never stops" pages only if at least this share of its calls came at its steady cadence.
_STEADY_SHARE = 0.5
#: Gaps shorter than this (parallel calls) count as this long.
_MIN_GAP_S = 0.5
_MODELS_PER_RUN = 4
#: A run whose context has grown this many times since it began is making progress, not looping.
_PROGRESS = 2.0


class _Run:
    """One session's calls since its last pause."""

    __slots__ = ("started", "last_ts", "calls", "cost", "log_gap", "steady", "repeats", "loop_like", "score",
                 "peak", "first_input", "inputs", "models", "flagged")

    def __init__(self, ts: float) -> None:
        self.started = ts
        self.last_ts = ts
        self.calls = 0
        self.cost = 0  # micro-dollars
        self.log_gap: float | None = None  # EW mean of log(gap seconds)
        self.steady = 0  # calls at the run's cadence
        self.repeats = 0  # calls repeating an earlier request
        self.loop_like = 0  # calls both at the cadence and repeating
        self.score = 0  # CUSUM: +1 per loop-like call, -_MISS_PENALTY per other, never below 0
        self.peak = 0  # its highest value
        self.first_input = 0  # input tokens of its first call that had any
        self.inputs: list[tuple[str, int, int]] = []  # the last _LAG (model, input tokens, output tokens)
        self.models: dict[str, list[int]] = {}  # model -> [micro-dollars, calls]
        self.flagged: tuple[int, float] | None = None  # (loop-like calls, duration) when it paged

    def state(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    @classmethod
    def restore(cls, values: tuple[Any, ...]) -> _Run:
        run = cls.__new__(cls)
        for name, value in zip(cls.__slots__, values, strict=True):
            setattr(run, name, value)
        return run

    @property
    def model(self) -> str:
        return max(self.models.items(), key=lambda kv: kv[1][1])[0] if self.models else "?"


def _decayed(peak: tuple[float, float], now: float, half_life_s: float) -> float:
    """A decayed maximum ``(value, when)`` as seen at ``now``.

    >>> _decayed((100.0, 0.0), 7 * 86400, 7 * 86400)
    50.0
    """
    value, when = peak
    return value * 0.5 ** (max(0.0, now - when) / half_life_s)


def _duration(seconds: float) -> str:
    """A run's length for a summary.

    >>> _duration(95), _duration(3 * 3600 + 20 * 60), _duration(27 * 3600)
    ('2 min', '3 h 20 min', '27 h 0 min')
    """
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


class RunawayLoop(Detector):
    """A session whose run of calls has become far more loop-like than this subject's sessions.

    Examples
    --------
    An ordinary agent session (growing context, irregular gaps) does not page; a session
    re-sending the same 20k-token request every 30 s on a cheap model does, within minutes,
    at info severity since it costs little:

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, RunawayLoopConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {"key_alias": "ci-agent"})
    >>> loops = RunawayLoop(RunawayLoopConfig(), BaselineConfig(), "key", "k1")
    >>> def call(session, ts, tokens, model="gpt-5-mini", dollars=0.004):
    ...     obs = Observation("request", ts, cost=int(dollars * 1e6), model=model, session_id=session,
    ...                       input_tokens=tokens)
    ...     loops.learn_one(obs, ctx)
    ...     return [f for f in loops.score_one(ctx, ts, obs) if f.abnormal]
    >>> t0 = 1_762_128_000.0
    >>> gaps = [5, 40, 12, 90, 8, 25, 60, 15, 30, 7, 45, 20, 10, 70, 18, 35, 9, 50, 22, 14]
    >>> [f for i, gap in enumerate(gaps) for f in call("work", t0 + sum(gaps[:i]), 12_000 + 1_500 * i)]
    []
    >>> t1 = t0 + 7200
    >>> for i in range(100):
    ...     findings = call("stuck", t1 + 30 * i, 20_000)
    ...     if findings:
    ...         break
    >>> i, findings[0].episode, findings[0].severity
    (4, 'stuck', 'info')
    >>> findings[0].summary
    'session stuck on key ci-agent has called gpt-5-mini 5 times in 2 min without a pause (one call every 30 s, 4 repeating the same request): $0.02 so far, $0.60/h if it keeps going'
    """

    name = "runaway_loop"
    config: RunawayLoopConfig

    def __init__(self, config: RunawayLoopConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.runs: dict[str, _Run] = {}  # session id -> its live run, least recently active first
        # the most loop-like calls, and the longest duration (s), of the subject's completed runs: (value, when)
        self.most_like = (0.0, 0.0)  # the highest loop score
        self.longest = (0.0, 0.0)

    # -- snapshots: runs as tuples --------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["runs"] = {sid: run.state() for sid, run in self.runs.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.runs = {sid: _Run.restore(values) for sid, values in self.runs.items()}

    def derive(self) -> None:
        cfg = self.config
        self._cfg_pause_s = cfg.pause_minutes * 60
        self._cfg_min_s = cfg.min_minutes * 60
        self._cfg_endless_s = cfg.endless_hours * 3600
        self._cfg_half_life_s = cfg.history_half_life_hours * 3600
        self._cfg_cadence = math.log1p(cfg.cadence_tolerance)
        self._cfg_output = math.log1p(cfg.output_tolerance)
        self._cfg_floor = int(cfg.min_usd_per_hour * MICROS)

    # -- what this subject's ordinary runs look like ---------------------------------------
    def _complete(self, session_id: str) -> None:
        run = self.runs.pop(session_id)
        like, duration = run.peak, run.last_ts - run.started
        if run.flagged is not None:
            # a run that paged counts as it was when it paged: a real loop that ran all weekend must not
            # hide the next one for weeks, and an ordinary job that pages (a new nightly batch) raises the
            # bar history_factor-fold each time, so it stops paging within a few nights
            like, duration = run.flagged
        half_life, ts = self._cfg_half_life_s, run.last_ts
        if like > _decayed(self.most_like, ts, half_life):
            self.most_like = (float(like), ts)
        if duration > _decayed(self.longest, ts, half_life):
            self.longest = (duration, ts)

    # -- learning ------------------------------------------------------------------------
    def learn_one(self, obs: Observation, ctx: Context) -> None:
        session_id = obs.session_id
        if not session_id or not obs.ok:
            return
        ts, runs, pause_s = obs.ts, self.runs, self._cfg_pause_s
        while runs:  # complete runs that paused (the dict is in LRU order: oldest first)
            oldest, idle = next(iter(runs.items()))
            if ts - idle.last_ts < pause_s:
                break
            self._complete(oldest)
        run = runs.pop(session_id, None)  # re-inserted last: keeps the LRU order
        if run is None:
            if len(runs) >= self.config.max_tracked_sessions:
                self._complete(next(iter(runs)))
            run = _Run(ts)
        runs[session_id] = run
        self._add(run, obs)

    def _add(self, run: _Run, obs: Observation) -> None:
        if run.calls:
            log_gap = math.log(max(_MIN_GAP_S, obs.ts - run.last_ts))
            # the second call has no cadence yet: its gap is the cadence
            steady = run.log_gap is None or abs(log_gap - run.log_gap) <= self._cfg_cadence
            run.log_gap = log_gap if run.log_gap is None else run.log_gap + _GAP_ALPHA * (log_gap - run.log_gap)
            # near the same as both the previous call and the one _LAG calls back: one earlier call alone is
            # matched by chance now and then (an ordinary session whose context sits at the model's limit)
            # ... and not after the context grew _PROGRESS-fold since the run began: a session that made
            # progress until its context sits at the model's limit is working (or burning: session_burn)
            repeat = (obs.input_tokens > 0 and bool(run.inputs) and obs.input_tokens <= _PROGRESS * run.first_input
                      and all(self._same(obs, earlier) for earlier in {run.inputs[0], run.inputs[-1]}))
            like = steady and repeat
            run.steady += steady
            run.repeats += repeat
            run.loop_like += like
            run.score = run.score + 1 if like else max(0, run.score - _MISS_PENALTY)
            run.peak = max(run.peak, run.score)
        if obs.input_tokens > 0:
            if not run.first_input:
                run.first_input = obs.input_tokens
            run.inputs.append((obs.model, obs.input_tokens, obs.output_tokens))
            if len(run.inputs) > _LAG:
                del run.inputs[0]
        run.calls += 1
        run.cost += obs.cost
        if obs.ts > run.last_ts:
            run.last_ts = obs.ts
        model = run.models.get(obs.model)
        if model is not None:
            model[0] += obs.cost
            model[1] += 1
        elif len(run.models) < _MODELS_PER_RUN:
            run.models[obs.model] = [obs.cost, 1]

    def _same(self, obs: Observation, earlier: tuple[str, int, int]) -> bool:
        """Whether ``obs`` is near the same request as an earlier (model, input tokens, output tokens)."""
        model, tokens, output = earlier
        return (model == obs.model and abs(obs.input_tokens - tokens) <= self.config.token_tolerance * tokens
                and (not output or not obs.output_tokens
                     or abs(math.log(obs.output_tokens / output)) <= self._cfg_output))

    # -- scoring -------------------------------------------------------------------------
    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        if obs is not None:
            run = self.runs.get(obs.session_id) if obs.session_id else None
            if run is None:
                return []
            finding = self._judge(ctx, obs.session_id, run, now)  # type: ignore[arg-type]
            return [finding] if finding.abnormal or ctx.normal_findings else []
        pause_s = self._cfg_pause_s
        for session_id in [s for s, run in self.runs.items() if now - run.last_ts >= pause_s]:
            self._complete(session_id)
        return [self._judge(ctx, sid, run, now) for sid, run in self.runs.items() if run.flagged]

    def _verdict(self, run: _Run) -> str | None:
        """Why the run pages ("loops", "never stops"), None while it does not."""
        cfg = self.config
        duration = run.last_ts - run.started
        if run.calls < cfg.min_calls or duration < self._cfg_min_s:
            return None
        factor, half_life, ts = cfg.history_factor, self._cfg_half_life_s, run.last_ts
        # the subject's runs count only once one of them has looped (a score of min_loop_calls); below that
        # they show what noise does, which min_loop_calls already allows for
        most = _decayed(self.most_like, ts, half_life)
        if run.score >= (factor * most if most >= cfg.min_loop_calls else cfg.min_loop_calls):
            return "loops"
        if (duration >= max(self._cfg_endless_s, factor * _decayed(self.longest, ts, half_life))
                and run.steady >= _STEADY_SHARE * (run.calls - 2)):
            return "never stops"
        return None

    def _judge(self, ctx: Context, session_id: str, run: _Run, now: float) -> Finding:
        cfg = self.config
        duration = run.last_ts - run.started
        if run.flagged is None:
            if self._verdict(run) is None:
                return Finding(False, run.loop_like, None, unit="calls", episode=session_id)
            run.flagged = (run.score, duration)
        per_hour = run.cost * 3600 / max(duration, 60.0)
        gap = duration / max(1, run.calls - 1)
        subject = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        repeating = f", {run.repeats} repeating the same request" if run.repeats else ""
        summary = (
            f"session {session_id} on {ctx.scope} {subject or ctx.subject} has called {run.model} {run.calls} times "
            f"in {_duration(duration)} without a pause (one call every {gap:.0f} s{repeating}): "
            f"{usd(run.cost)} so far, {usd(per_hour)}/h if it keeps going"
        )
        models = sorted(run.models.items(), key=lambda kv: -kv[1][0])
        return Finding(
            abnormal=True, observed=run.calls, expected=None, unit="calls", episode=session_id, summary=summary,
            severity=cfg.low_spend_severity if per_hour < self._cfg_floor else None,
            labels={"session": session_id},
            causes=[("session", session_id, run.cost, run.calls),
                    *(("model", name, cost, n) for name, (cost, n) in models)],
            details={"calls": run.calls, "duration_minutes": round(duration / 60, 1),
                     "usd_per_hour": round(per_hour / MICROS, 4), "spent_usd": round(run.cost / MICROS, 4),
                     "steady_calls": run.steady, "repeated_calls": run.repeats, "loop_like_calls": run.loop_like,
                     "seconds_between_calls": round(gap, 1)},
        )
