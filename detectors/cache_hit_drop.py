"""cache_hit_drop: a subject's prompt-cache hit ratio halving (or worse) against its baseline.

The hit ratio is cache-read tokens / input tokens (input includes cached tokens, as in
:class:`~spendwatch.schemas.event.GatewayEvent`) over successful requests. A session's first
call writes the cache rather than reading it, so the baseline keeps two ratios, exponentially
decayed token sums (``baseline_half_life_hours``) of everything that has left the window:
one for first calls and one for the calls after them. Each recent request then *expects*
``baseline ratio x input tokens`` cached, and the detector compares what was read with what
was expected -- a mix of short and long sessions does not look like a drop.

Evidence is counted in **sessions**: the calls of one session share one prompt prefix, so
they hit or miss together. The detector looks at the newest session, the newest two... up to
the newest 24 active within the last day (:mod:`~spendwatch.detectors.session_spans`), and in
each span weighs sessions by their expected
cached tokens (Kish's effective number: ten equal sessions count ten, one session carrying
nearly all the tokens counts one); with ``min_sessions`` of 2 or more it leaves out the
session that lost the most (then one session's own prompt is never the subject's cache). How much a session's reads stray from what was expected
when nothing is wrong is learnt from the subject's own past (each expired ten-minute bucket,
session by session). A page needs all of:

* a subject that did cache: baseline ratio >= ``min_baseline_ratio`` over
  ``min_baseline_input_tokens`` and ``min_baseline_sessions`` (new keys wait);
* a drop: a span that read at most ``1 - min_drop`` of what it was expected to;
* evidence: ``min_sessions`` (effective) sessions in it, and a drop so far beyond
  ``normal_drop`` for that many effective sessions that normal straying would take it there
  with probability below ``significance``
  (Bonferroni-corrected for the spans looked at) -- minutes on a busy key, hours on a sparse
  one;
* money: the lost hits (billed at the input price instead of the cache-read price, both from
  genai-prices, model by model) >= ``min_wasted_usd``.

While an episode is active the baseline does not learn (a cache that stays broken keeps
paging at the repeat interval instead of becoming the new normal); it goes on while the
whole window reads less than ``1 - min_drop`` of what it should, and while the window is
too quiet to judge (a night) it holds its last verdict rather than resolving and paging
again the next morning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd
from spendwatch.detectors.rolling import BucketWindow, DecayedSums
from spendwatch.detectors.session_spans import newest_spans, note_session, span_tail, span_text
from spendwatch.schemas.pricing import cache_read_micros_per_token, input_micros_per_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from spendwatch.detectors.config import BaselineConfig, CacheHitDropConfig

#: Ten-minute buckets for the default two-hour window.
_BUCKETS = 12
#: Longest a quiet window holds an active episode.
_MAX_HOLD_S = 86_400
#: Token counts are squared in the variance sums: in millions, they stay well inside a float's range.
_MTOK = 1e-6
#: 2: first calls apart, per-session expected and read tokens in the window, the straying in the baseline.
_LAYOUT = 2
#: Before a first-call ratio is known from this many tokens, first calls expect the later calls' ratio x this.
_FIRST_CALL_TOKENS = 100_000


def _lost(sums: list[float]) -> float:
    """How many cached tokens a session read fewer than expected (its running sums, see ``recent``)."""
    return sums[3] - sums[2]


class _Span(NamedTuple):
    """The newest ``count`` sessions (or the whole window), from ``since``."""

    count: int
    since: float
    requests: float
    tokens: float  # input tokens
    cached: float  # cache-read tokens
    expected: float  # cache-read tokens the baseline ratios expected
    value: float  # what a lost hit on each input token costs (input minus cache-read price), micro-dollars
    rest_expected: float  # expected and read (without the session that lost the most, with min_sessions >= 2)...
    rest_cached: float
    effective: float  # ...and Kish's effective number of those sessions
    sessions: float  # sessions counted as evidence: that effective number, plus the one left out


class CacheHitDrop(Detector):
    """Recent cache reads against what the subject's baseline ratios expected, with session evidence.

    Examples
    --------
    An agent key running about six sessions an hour, whose calls after the first hit the
    cache 70% of the time, for two days; then its prompt prefix starts changing and the
    ratio halves. The third broken session, half an hour in, is enough evidence:

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, CacheHitDropConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {"key_alias": "ci-agent"})
    >>> cache = CacheHitDrop(CacheHitDropConfig(), BaselineConfig(), "key", "k1")
    >>> def session(ts, number, ratio):
    ...     findings = []
    ...     for i in range(6):                 # the first call writes the cache, the others read it
    ...         cached = int(40_000 * ratio * (0.3 if i == 0 else 1 + 0.05 * (i % 3 - 1)))
    ...         obs = Observation("request", ts + i * 60, cost=50_000, model="claude-sonnet-4-5",
    ...                           provider="anthropic", input_tokens=40_000, cache_read_tokens=cached,
    ...                           session_id=f"s{number}")
    ...         cache.learn_one(obs, ctx)
    ...         findings = cache.score_one(ctx, obs.ts, obs)
    ...     return findings
    >>> t0 = 1_762_041_600.0
    >>> [f for n in range(2 * 24 * 6) for f in session(t0 + n * 600, n, 0.70 + 0.1 * (n % 3 - 1))]
    []
    >>> t1 = t0 + 2 * 86_400
    >>> for n in range(12):
    ...     findings = session(t1 + n * 600, 1000 + n, 0.35)
    ...     if findings:
    ...         break
    >>> n, findings[0].summary
    (2, 'key ci-agent: prompt-cache hit ratio 31% over the last 3 sessions (25 min): 18 requests, 0.7M input tokens, where 62% was usual: about $0.61 of extra input spend')
    """

    name = "cache_hit_drop"
    parts = {"window": BucketWindow, "baseline": DecayedSums}
    config: CacheHitDropConfig

    def __init__(self, config: CacheHitDropConfig, baseline_config: BaselineConfig, scope: str,
                 subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        window_s = config.window_minutes * 60
        self.window = BucketWindow(window_s, window_s / _BUCKETS)
        self.baseline = DecayedSums(config.baseline_half_life_hours * 3600)
        self.abnormal = False
        self.abnormal_ts = 0.0  # when the condition was last seen abnormal
        self.last_finding: Finding | None = None
        self.layout = _LAYOUT
        #: session -> [requests, input tokens, cache-read tokens, expected, value, first ts, last ts], least
        #: recently active first; cleared when an episode ends (its sessions were that episode's evidence)
        self.recent: dict[str, list[float]] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "recent" not in state:  # a snapshot from before session spans: they start empty
            self.recent = {}
        if state.get("layout") != _LAYOUT:
            # the state of the detector before sessions: its window holds no sessions; learn afresh
            window_s = self.window.window_s
            self.window = BucketWindow(window_s, window_s / _BUCKETS)
            self.baseline = DecayedSums(self.baseline.half_life_s)
            self.abnormal, self.abnormal_ts, self.last_finding, self.layout = False, 0.0, None, _LAYOUT

    # -- learning ----------------------------------------------------------------------
    def _ratios(self) -> tuple[float, float]:
        """The baseline hit ratios of first calls and of the calls after them (0.0 while unknown)."""
        get = self.baseline.get
        rest_tokens = get("in")
        rest = get("cr") / rest_tokens if rest_tokens > 0 else 0.0
        first_tokens = get("in1")
        first = get("cr1") / first_tokens if first_tokens >= _FIRST_CALL_TOKENS else rest * 0.3
        return first, rest

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        tokens = obs.input_tokens
        if not obs.ok or tokens <= 0:
            return
        window = self.window
        session = obs.session_id or f"request:{obs.record_id}"
        seen = f"s:{session}"
        first = obs.session_id is not None and seen not in window.totals
        first_ratio, rest_ratio = self._ratios()
        tokens_in, cached = float(tokens), float(obs.cache_read_tokens)
        expected = tokens_in * (first_ratio if first else rest_ratio)
        in_name, cr_name = ("in1", "cr1") if first else ("in", "cr")
        # a hit lost costs the input price less the cache-read price (a tenth for Anthropic, half for some OpenAI
        # models); snapshots from before this priced it at 90% of the input price (their window expires in hours)
        value = tokens * max(0.0, input_micros_per_token(obs.model, obs.provider)
                             - cache_read_micros_per_token(obs.model, obs.provider))
        session_exp, session_cr = f"e:{session}", f"c:{session}"
        for sums in (window.bucket_at(obs.ts), window.totals):
            get = sums.get
            sums["n"] = get("n", 0.0) + 1.0
            sums["tokens"] = get("tokens", 0.0) + tokens_in
            sums["cached"] = get("cached", 0.0) + cached
            sums["expected"] = get("expected", 0.0) + expected
            sums["value"] = get("value", 0.0) + value
            sums[in_name] = get(in_name, 0.0) + tokens_in
            sums[cr_name] = get(cr_name, 0.0) + cached
            sums[seen] = get(seen, 0.0) + 1.0
            sums[session_exp] = get(session_exp, 0.0) + expected
            sums[session_cr] = get(session_cr, 0.0) + cached
        note_session(self.recent, session, obs.ts, (1.0, tokens_in, cached, expected, value))

    def _roll(self, now: float) -> None:
        """Expired buckets join the baseline ratios and, session by session, how far reads stray from expected."""
        window, baseline = self.window, self.baseline
        for index, sums in window.expire(now):
            if self.abnormal:  # never learn from the anomaly being flagged
                continue
            # a bucket that read less than 1 - min_drop of what it should is suspect: its ratio is not learnt (a
            # drop that has not paged yet must not become the new normal), and every session's straying is
            # clipped at min_drop (one broken stretch does not teach that halving is ordinary)
            clip = self.config.min_drop
            suspect = sums.get("cached", 0.0) < (1 - clip) * sums.get("expected", 0.0)
            learnt = {} if suspect else {name: sums.get(name, 0.0) for name in ("in", "cr", "in1", "cr1")}
            squares = deviations = sessions = 0.0
            for name, expected in sums.items():
                if name.startswith("e:") and expected > 0:
                    read = sums.get(f"c:{name[2:]}", 0.0)
                    squares += (expected * _MTOK) ** 2
                    deviations += (min(clip * expected, abs(read - expected)) * _MTOK) ** 2
                    sessions += 1.0
            if squares:
                learnt.update({"w2": squares, "dev": deviations, "sessions": sessions})
            baseline.fold(index * window.bucket_s, learnt)

    # -- scoring -----------------------------------------------------------------------
    def _spans(self, now: float) -> Iterator[_Span]:
        """The newest session, the newest two... (active within a day): the spans a drop is looked for in."""
        leave_out = self.config.min_sessions >= 2
        # weighed by expected cached tokens; the session that lost the most is left out
        for span in newest_spans(self.recent, now, weight=3, strays=_lost, leave_out=leave_out, scale=_MTOK):
            n, tokens, cached, expected, value = span.totals
            yield _Span(span.count, span.since, n, tokens, cached, expected, value, span.rest[3], span.rest[2],
                        span.effective, span.effective + leave_out)

    def _window_span(self) -> _Span:
        """The whole window, for an episode that goes on."""
        totals, window = self.window.totals, self.window
        since = (min(window.buckets) * window.bucket_s) if window.buckets else 0.0
        get = totals.get
        return _Span(0, since, get("n", 0.0), get("tokens", 0.0), get("cached", 0.0), get("expected", 0.0),
                     get("value", 0.0), get("expected", 0.0), get("cached", 0.0), 0.0, 0.0)

    def _newest_drop(self, now: float) -> tuple[float, _Span] | None:
        """The most improbable drop among the spans of newest sessions, with its tail probability, if any."""
        cfg, baseline, recent = self.config, self.baseline, self.recent
        keep = 1 - cfg.min_drop
        if not recent:
            return None
        newest = recent[next(reversed(recent))]
        if newest[2] > keep * newest[3]:
            return None  # the newest session read what it should: no span ending now shows a new drop
        squares = baseline.get("w2")
        variance = max(baseline.get("dev") / squares if squares > 0 else 0.0, cfg.min_session_spread ** 2)
        looks = len(recent)
        best = None
        for span in self._spans(now):
            if (span.requests < cfg.min_requests or span.tokens < cfg.min_input_tokens or span.rest_expected <= 0
                    or span.rest_cached > keep * span.rest_expected or span.sessions < cfg.min_sessions):
                continue
            excess = 1 - span.rest_cached / span.rest_expected - cfg.normal_drop  # beyond what is ordinary
            tail = span_tail(excess, span.effective, variance, looks)
            if tail < cfg.significance and (best is None or tail < best[0]):
                best = (tail, span)
        return best

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        window, baseline, cfg = self.window, self.baseline, self.config
        if now >= window.expires_from:
            self._roll(now)
        totals = window.totals
        quiet = totals.get("n", 0.0) < cfg.min_requests or totals.get("tokens", 0.0) < cfg.min_input_tokens
        if quiet and self.abnormal and self.last_finding is not None and now - self.abnormal_ts < _MAX_HOLD_S:
            # too quiet to judge (a night): an active episode holds rather than resolving and re-paging, for a
            # day at most (the baseline does not learn meanwhile, and a sparse key may stay quiet for long)
            return [self.last_finding]
        was_abnormal = self.abnormal
        self.abnormal, self.last_finding = False, None
        if (baseline.get("in") + baseline.get("in1") < cfg.min_baseline_input_tokens
                or baseline.get("sessions") < cfg.min_baseline_sessions or self._ratios()[1] < cfg.min_baseline_ratio):
            return []
        drop = self._newest_drop(now)
        if drop is not None:
            tail, span = drop
        elif was_abnormal and not quiet and totals.get("cached", 0.0) <= (1 - cfg.min_drop) * totals.get("expected", 0.0):
            # the episode goes on while the whole window stays down, evidence or not: only a recovery ends it
            tail, span = 1.0, self._window_span()
        else:
            if was_abnormal:
                self.recent.clear()  # the episode is over: its sessions were its evidence, not a new drop's
            return []
        price_per_token = span.value / span.tokens  # what a lost hit costs, micro-dollars per token, volume-weighted
        wasted = max(0.0, span.expected - span.cached) * price_per_token
        if not was_abnormal and price_per_token and wasted < cfg.min_wasted_usd * MICROS:
            return []
        self.abnormal, self.abnormal_ts = True, now
        ratio, usual = span.cached / span.tokens, span.expected / span.tokens
        who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        money = f": about {usd(wasted)} of extra input spend" if price_per_token else ""
        summary = (
            f"{ctx.scope} {who or ctx.subject}: prompt-cache hit ratio {ratio:.0%} over the last "
            f"{span_text(span.count, now - span.since)}: {int(span.requests)} requests, "
            f"{span.tokens / 1e6:.1f}M input tokens, where {usual:.0%} was usual{money}"
        )
        self.last_finding = Finding(
            abnormal=True, observed=round(ratio, 4), expected=round(usual, 4), unit="ratio", summary=summary,
            root_cause_kinds=("model", "session", "tag"),
            details={"window_input_tokens": int(span.tokens), "window_cache_read_tokens": int(span.cached),
                     "effective_sessions": round(span.sessions, 1), "tail_probability": float(f"{tail:.3g}"),
                     "estimated_extra_usd": round(wasted / MICROS, 2)},
        )
        return [self.last_finding]
