"""context_bloat: requests carrying several times their usual input tokens (or cost), model for model.

Prompt or context bloat -- an agent that stopped trimming its history, a retrieval step that
now stuffs the whole corpus in, a template that repeats itself -- shows as spend per request
growing several-fold at a steady call rate. The detector compares each request with the
usual size of requests *to the same model* (the decayed mean of the log of input tokens, or
of cost with ``metric: usd``, ``baseline_half_life_hours``), so a move to a pricier model is
model_mix_drift's business, not bloat, and a cache that stopped hitting (same tokens, higher
cost) is cache_hit_drop's.

Evidence is counted in **sessions**: a session's context grows call by call, so one long
session is large but ordinary. The detector looks at the newest session, the newest two... up
to the newest 24 active within the last day (:mod:`~spendwatch.detectors.session_spans`):
minutes of a busy key, hours of a sparse one. In each span it takes every session's mean
log-size excess over its model's usual, leaves out the session that exceeds the most (a single
long session, a runaway loop, is not bloat) and weighs the others by their requests (Kish's
effective number); only a session whose calls grew several-fold, call position for call
position, far beyond the key's own straying is evidence on its own (below). How far sessions stray when nothing is wrong is learnt from the subject's own
expired buckets, and taken to be at least ``min_session_spread`` (a key whose past happened to be
uniform still needs several grown sessions). A page needs all of:

* growth: the others' requests at least ``min_factor`` x their models' usual size;
* evidence: ``min_sessions`` sessions, and growth so far beyond ``normal_factor`` for that
  many effective sessions that normal straying would reach it with probability below
  ``significance`` (Bonferroni-corrected for the spans looked at);
  or the newest session alone, when it is overwhelming evidence on its own: at least
  ``single_session_requests`` of its calls each ``min_factor`` x their usual size at their call
  position, and its mean growth so far beyond ``normal_factor`` that one session straying as
  the subject's do would reach it with probability below ``single_session_significance`` (one
  session is one draw however many calls it has: a key whose sessions stray little pages on its
  first grown session, one whose sessions range widely waits for a second);
* money: the extra spend in the span at least ``min_extra_usd`` (off by default);
* a baseline: ``min_baseline_requests`` for the model and ``min_baseline_sessions`` of
  straying learnt (new keys and new models wait).

The baseline does not learn during an episode; the episode goes on while the whole window
stays ``min_factor`` x its usual size, and a quiet night holds it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd
from spendwatch.detectors.evidence import normal_tail
from spendwatch.detectors.rolling import BucketWindow, DecayedSums
from spendwatch.detectors.session_spans import newest_spans, note_session, span_tail, span_text
from spendwatch.schemas.pricing import cache_read_micros_per_token, input_micros_per_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from spendwatch.detectors.config import BaselineConfig, ContextBloatConfig

_BUCKETS = 12
#: Longest a quiet window holds an active episode.
_MAX_HOLD_S = 86_400
#: Baseline names kept: (count, log-size sum) for each model and each (model, call position) pair.
_MAX_NAMES = 512
#: Live sessions whose calls are counted (the least recently active is forgotten first).
_MAX_SESSIONS = 512
#: Running sums kept per recent session (known requests, summed excess, cost, requests grown min_factor x), then
#: its first and last timestamps.
_RECENT_SUMS = 4


def _exceeds(sums: list[float]) -> float:
    """A session's summed log-size excess over its models' usual (its running sums, see ``recent``)."""
    return sums[1]


class _Span(NamedTuple):
    """The newest ``count`` sessions (or the whole window, count 0), from ``since``."""

    count: int
    since: float
    requests: float  # requests whose model has a baseline
    cost: float  # what their size cost (input tokens at the input price, or the cost), micro-dollars
    rest_requests: float  # the same without the session that exceeds the most...
    rest_excess: float  # ...their summed log-size excess over their models' usual...
    rest_cost: float
    effective: float  # ...and Kish's effective number of those sessions
    sessions: int


class ContextBloat(Detector):
    """Requests' size against the usual size of requests to the same model, with session evidence.

    Examples
    --------
    A coding agent with about six sessions an hour, shorter and longer prompts mixed (8k to
    30k input tokens, growing call by call); then its prompts carry four times as much context.
    The session that grew most is left out and the others are compared with the model's usual:

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, ContextBloatConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {"key_alias": "ci-agent"})
    >>> bloat = ContextBloat(ContextBloatConfig(), BaselineConfig(), "key", "k1")
    >>> def session(ts, number, factor=1.0):
    ...     findings = []
    ...     base = (8_000, 12_000, 20_000, 30_000)[number % 4]
    ...     for i in range(6):
    ...         tokens = int((base + 1_000 * i) * factor)
    ...         obs = Observation("request", ts + i * 60, cost=tokens * 3, model="claude-sonnet-4-5",
    ...                           provider="anthropic", input_tokens=tokens, session_id=f"s{number}")
    ...         bloat.learn_one(obs, ctx)
    ...         findings = bloat.score_one(ctx, obs.ts, obs)
    ...     return findings
    >>> t0 = 1_762_041_600.0
    >>> [f for n in range(2 * 24 * 6) for f in session(t0 + n * 600, n)]
    []
    >>> t1 = t0 + 2 * 86_400
    >>> for n in range(12):
    ...     findings = session(t1 + n * 600, 1000 + n, factor=4.0)
    ...     if findings:
    ...         break
    >>> n, findings[0].summary
    (4, 'key ci-agent: requests carry 7.0x the input tokens usual for their model over the last 2 sessions (10 min): 7 requests, about $1.01 of extra spend')

    With ``single_session_requests`` set (off by default), one grown session on its own is not
    bloat while the key's own straying (prompts from 8k to 30k) could reach it; twenty times the
    usual size, call after call, is overwhelming evidence:

    >>> bloat = ContextBloat(ContextBloatConfig(single_session_requests=4), BaselineConfig(), "key", "k1")
    >>> _ = [session(t0 + n * 600, n) for n in range(2 * 24 * 6)]
    >>> session(t1, 5000, factor=4.0)
    []
    >>> [f.summary for f in session(t1 + 2 * 86_400, 5001, factor=20.0)]
    ['key ci-agent: requests carry 15.9x the input tokens usual for their model over the last session (5 min): 6 requests, about $4.89 of extra spend']
    """

    name = "context_bloat"
    parts = {"window": BucketWindow, "baseline": DecayedSums}
    config: ContextBloatConfig

    def __init__(self, config: ContextBloatConfig, baseline_config: BaselineConfig, scope: str,
                 subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        window_s = config.window_minutes * 60
        self.window = BucketWindow(window_s, window_s / _BUCKETS)
        self.baseline = DecayedSums(config.baseline_half_life_hours * 3600, max_names=_MAX_NAMES)
        self.calls: dict[str, int] = {}  # session -> calls seen, least recently active first
        self.abnormal = False
        self.abnormal_ts = 0.0  # when the condition was last seen abnormal
        self.last_finding: Finding | None = None
        #: session -> [known requests, summed log-size excess, cost, requests grown min_factor x, first ts, last ts],
        #: least recently active first; cleared when an episode ends (its sessions were that episode's evidence)
        self.recent: dict[str, list[float]] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        recent = state.get("recent")
        if recent is None or any(len(sums) != _RECENT_SUMS + 2 for sums in recent.values()):
            # a snapshot from before session spans, or before the grown-request count: the last day's sessions
            # start empty (the baseline, what takes days to learn, is kept)
            self.recent = {}

    def derive(self) -> None:
        cfg = self.config
        self._cfg_min_log = math.log(cfg.min_factor)
        self._cfg_normal_log = math.log(cfg.normal_factor)

    # -- learning ----------------------------------------------------------------------
    def learn_one(self, obs: Observation, ctx: Context) -> None:
        size = obs.input_tokens if self.config.metric == "input_tokens" else obs.cost
        if not obs.ok or size <= 0:
            return
        size_log = math.log(size)
        session = obs.session_id or f"request:{obs.record_id}"
        calls = self.calls.pop(session, 0) + 1  # re-inserted last: the dict stays in least-recent order
        self.calls[session] = calls
        if len(self.calls) > _MAX_SESSIONS:
            del self.calls[next(iter(self.calls))]
        # a session's context grows call by call: call n is compared with the usual size of calls n of that model
        # (in powers of two: 1, 2-3, 4-7...); until that is known the request is not evidence (a model's mean over
        # all positions would make every late call of a long session look bloated). In tokens, a model with few
        # requests at that position leans on all models' usual there (shrunk towards it with the weight of
        # min_baseline_requests requests): a sparse key's requests are evidence too, a busy key's compare model
        # for model
        get, prior = self.baseline.get, self.config.min_baseline_requests
        bucket = calls.bit_length()
        position = f"{obs.model}@{bucket}"
        at_n, at_log, any_n, any_log = f"n:{position}", f"l:{position}", f"n:*@{bucket}", f"l:*@{bucket}"
        if self.config.metric == "usd":  # prices differ by model: only the model's own usual cost compares
            own = get(at_n)
            known = own >= prior
            excess = size_log - get(at_log) / own if known else 0.0
        else:
            pooled = get(any_n)
            known = pooled >= prior
            excess = size_log - (get(at_log) + prior * get(any_log) / pooled) / (get(at_n) + prior) if known else 0.0
        session_n, session_x, session_c = f"r:{session}", f"x:{session}", f"c:{session}"
        # what the size costs: input tokens at the model's input price, the cache reads among them at the cache-read
        # price (output did not grow), or the cost itself
        if self.config.metric == "usd":
            cost = float(obs.cost)
        else:
            cached = min(size, obs.cache_read_tokens)
            cost = ((size - cached) * input_micros_per_token(obs.model, obs.provider)
                    + cached * cache_read_micros_per_token(obs.model, obs.provider))
        for sums in (self.window.bucket_at(obs.ts), self.window.totals):
            get = sums.get
            sums[at_n] = get(at_n, 0.0) + 1.0
            sums[at_log] = get(at_log, 0.0) + size_log
            sums[any_n] = get(any_n, 0.0) + 1.0
            sums[any_log] = get(any_log, 0.0) + size_log
            if known:
                sums["known"] = get("known", 0.0) + 1.0
                sums["excess"] = get("excess", 0.0) + excess
                sums[session_n] = get(session_n, 0.0) + 1.0
                sums[session_x] = get(session_x, 0.0) + excess
                sums[session_c] = get(session_c, 0.0) + cost
        if known:
            # a call counts towards a session's evidence on its own only when its model's own usual size at that
            # position is known: a session on a model the key seldom uses (a burst on a frontier model) is another
            # workload, whose size the pooled usual of the key's other models does not describe
            grown = excess >= self._cfg_min_log and self.baseline.get(at_n) >= prior
            note_session(self.recent, session, obs.ts, (1.0, excess, cost, float(grown)))

    def _roll(self, now: float) -> None:
        """Expired buckets join the models' usual sizes and, session by session, how far sessions stray."""
        window, baseline = self.window, self.baseline
        bound = self._cfg_min_log
        for index, sums in window.expire(now):
            if self.abnormal:  # never learn from the anomaly being flagged
                continue
            # a bucket already min_factor x its usual size is suspect: not learnt at all (bloat that has not paged
            # yet must become neither the new usual size nor ordinary straying)
            if sums.get("excess", 0.0) >= bound * sums.get("known", 0.0) > 0:
                continue
            learnt = {name: v for name, v in sums.items() if name[:2] in ("n:", "l:")}
            squares = deviations = sessions = 0.0
            for name, requests in sums.items():
                if name.startswith("r:"):
                    # a session's mean excess, clipped so that one bloated stretch does not teach that bloat is normal
                    mean = max(-bound, min(bound, sums.get(f"x:{name[2:]}", 0.0) / requests))
                    squares += requests * requests
                    deviations += requests * requests * mean * mean
                    sessions += 1.0
            if squares:
                learnt.update({"w2": squares, "dev": deviations, "sessions": sessions})
            baseline.fold(index * window.bucket_s, learnt)

    # -- scoring -----------------------------------------------------------------------
    def _spans(self, now: float) -> Iterator[_Span]:
        """The newest session, the newest two... (active within a day): the spans bloat is looked for in."""
        # weighed by their requests; the session that exceeds the most is left out
        for span in newest_spans(self.recent, now, weight=0, strays=_exceeds):
            requests, _, cost, _ = span.totals
            rest_requests, rest_excess, rest_cost, _ = span.rest
            yield _Span(span.count, span.since, requests, cost, rest_requests, rest_excess, rest_cost, span.effective,
                        span.count)

    def _window_span(self) -> _Span:
        """The whole window, for an episode that goes on."""
        window, totals = self.window, self.window.totals
        per_session = [name for name in totals if name.startswith("r:")]
        cost = sum(totals.get(f"c:{name[2:]}", 0.0) for name in per_session)
        since = (min(window.buckets) * window.bucket_s) if window.buckets else 0.0
        known = totals.get("known", 0.0)
        return _Span(0, since, known, cost, known, totals.get("excess", 0.0), cost, 0.0, len(per_session))

    def _single_session(self, newest: list[float], variance: float) -> tuple[float, _Span] | None:
        """The newest session alone, when its growth is overwhelming evidence on its own (see the config)."""
        cfg = self.config
        requests, excess, cost, grown = newest[:_RECENT_SUMS]
        if not cfg.single_session_requests or grown < cfg.single_session_requests:
            return None
        # one session is one draw of the key's straying, however many calls it has: its mean growth beyond
        # normal_factor, in the key's own session spread, must be improbable on its own (one look: the newest session)
        beyond = excess / requests - self._cfg_normal_log
        tail = normal_tail(beyond / math.sqrt(variance))
        if tail >= cfg.single_session_significance:
            return None
        since = newest[_RECENT_SUMS]
        return tail, _Span(1, since, requests, cost, requests, excess, cost, 0.0, 1)

    def _newest_growth(self, now: float) -> tuple[float, _Span] | None:
        """The most improbable growth among the spans of newest sessions, with its tail probability, if any."""
        cfg, baseline, recent = self.config, self.baseline, self.recent
        if not recent:
            return None
        newest = recent[next(reversed(recent))]
        if newest[1] < self._cfg_min_log * newest[0]:
            return None  # the newest session is ordinary: no span ending now shows new bloat
        squares = baseline.get("w2")
        variance = max(baseline.get("dev") / squares if squares > 0 else 0.0, cfg.min_session_spread ** 2)
        looks = len(recent)
        best = self._single_session(newest, variance)
        for span in self._spans(now):
            if (span.requests < cfg.min_requests or span.rest_requests <= 0 or span.effective + 1 < cfg.min_sessions
                    or span.rest_excess < self._cfg_min_log * span.rest_requests):
                continue
            beyond = span.rest_excess / span.rest_requests - self._cfg_normal_log
            tail = span_tail(beyond, span.effective, variance, looks)
            if tail < cfg.significance and (best is None or tail < best[0]):
                best = (tail, span)
        return best

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        window, baseline, cfg = self.window, self.baseline, self.config
        if now >= window.expires_from:
            self._roll(now)
        totals = window.totals
        known = totals.get("known", 0.0)
        quiet = known < cfg.min_requests
        if quiet and self.abnormal and self.last_finding is not None and now - self.abnormal_ts < _MAX_HOLD_S:
            # too quiet to judge (a night): an active episode holds rather than resolving and re-paging, for a
            # day at most (the baseline does not learn meanwhile, and a sparse key may stay quiet for long)
            return [self.last_finding]
        was_abnormal = self.abnormal
        self.abnormal, self.last_finding = False, None
        if baseline.get("sessions") < cfg.min_baseline_sessions:
            return []
        growth = self._newest_growth(now)
        if growth is not None:
            tail, span = growth
            factor = math.exp(span.rest_excess / span.rest_requests)
        elif was_abnormal and not quiet and totals.get("excess", 0.0) >= self._cfg_min_log * known:
            # the episode goes on while the whole window stays bloated, evidence or not: only a recovery ends it
            tail, span = 1.0, self._window_span()
            factor = math.exp(totals.get("excess", 0.0) / known)
        else:
            if was_abnormal:
                self.recent.clear()  # the episode is over: its sessions were its evidence, not a new one's
            return []
        extra = span.cost * (1 - 1 / factor)
        if not was_abnormal and extra < cfg.min_extra_usd * MICROS:
            return []
        self.abnormal, self.abnormal_ts = True, now
        who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        what = "input tokens" if cfg.metric == "input_tokens" else "cost per request"
        summary = (
            f"{ctx.scope} {who or ctx.subject}: requests carry {factor:.1f}x the {what} usual for their model "
            f"over the last {span_text(span.sessions, now - span.since)}: {int(span.requests)} requests, about "
            f"{usd(extra)} of extra spend"
        )
        self.last_finding = Finding(
            abnormal=True, observed=round(factor, 2), expected=1.0, unit="ratio", summary=summary,
            root_cause_kinds=("model", "session", "tag"),
            details={"factor": round(factor, 2), "metric": cfg.metric, "requests": int(span.requests),
                     "sessions": span.sessions, "effective_sessions": round(span.effective + 1, 1),
                     "tail_probability": float(f"{tail:.3g}"), "estimated_extra_usd": round(extra / MICROS, 2)},
        )
        return [self.last_finding]
