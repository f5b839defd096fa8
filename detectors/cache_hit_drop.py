"""cache_hit_drop: a subject's prompt-cache hit ratio collapsing against its baseline.

The hit ratio is cache-read tokens / input tokens (input includes cached tokens, as in
:class:`~spendwatch.schemas.event.GatewayEvent`) over successful requests. The recent
ratio over ``window_minutes`` is compared with a baseline ratio kept as exponentially
decayed token sums of everything that has left the window. A page needs all of:

* enough volume: ``min_requests`` and ``min_input_tokens`` in the window,
  ``min_baseline_input_tokens`` in the baseline (new and sparse keys wait);
* a subject that did cache: baseline ratio >= ``min_baseline_ratio``;
* a collapse: window ratio below ``wasteful_ratio`` (20% -- wasteful for agent
  workloads, whose prompts are mostly a repeated prefix) *and* at least ``min_drop`` of
  the baseline ratio lost;
* money: the estimated extra spend in the window (lost cached tokens billed at the full
  input price instead of ~10% of it, input prices from genai-prices) >= ``min_wasted_usd``.

While an episode is active the baseline does not learn (the collapsed window is not
folded into it), so a cache that stays broken keeps paging at the repeat interval
instead of becoming the new normal; while the window is too quiet to judge (a night) the
episode holds its last verdict rather than resolving and paging again the next morning.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd
from spendwatch.detectors.rolling import BucketWindow, DecayedSums
from spendwatch.schemas.pricing import input_price_per_mtok

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, CacheHitDropConfig

_BUCKETS = 6
#: A cache read costs about a tenth of a fresh input token (Anthropic, Google; OpenAI 10-50%).
_CACHE_DISCOUNT = 0.9


@lru_cache(maxsize=4096)
def _input_price(model: str, provider: str | None) -> float:
    """USD per million input tokens (= micro-dollars per token), 0.0 when unknown."""
    price = input_price_per_mtok(model, provider)
    return float(price) if price is not None else 0.0


class CacheHitDrop(Detector):
    """Recent cache-read / input ratio against the subject's decayed baseline ratio.

    Examples
    --------
    An agent key whose prompts hit the cache 75% of the time for a day; then its prompt
    prefix starts changing on every call:

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, CacheHitDropConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {"key_alias": "ci-agent"})
    >>> cache = CacheHitDrop(CacheHitDropConfig(), BaselineConfig(), "key", "k1")
    >>> def call(ts, cached):
    ...     obs = Observation("request", ts, cost=50_000, model="claude-sonnet-4-5", provider="anthropic",
    ...                       input_tokens=40_000, cache_read_tokens=cached)
    ...     cache.learn_one(obs, ctx)
    ...     return cache.score_one(ctx, ts, obs)
    >>> t0 = 1_762_041_600.0
    >>> [f for i in range(24 * 30) for f in call(t0 + i * 120, 30_000)]   # a day at 75%
    []
    >>> t1 = t0 + 86_400
    >>> for i in range(60):                                               # then ~0%
    ...     findings = call(t1 + i * 120, 400)
    ...     if findings:
    ...         break
    >>> i, findings[0].summary
    (20, 'key ci-agent: prompt-cache hit ratio 15% over the last 60 min (26 requests, 1.0M input tokens), down from 75%: about $1.68 of extra input spend')
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
        self.last_finding: Finding | None = None

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        tokens = obs.input_tokens
        if not obs.ok or tokens <= 0:
            return
        price = _input_price(obs.model, obs.provider)
        tokens_in, cached, value = float(tokens), float(obs.cache_read_tokens), tokens * price
        # add(ts, {"n": 1.0, "in": tokens_in, "cr": cached, "value": value}) without the dict and loop, per request
        for sums in (self.window.bucket_at(obs.ts), self.window.totals):
            sums["n"] = sums.get("n", 0.0) + 1.0
            sums["in"] = sums.get("in", 0.0) + tokens_in
            sums["cr"] = sums.get("cr", 0.0) + cached
            sums["value"] = sums.get("value", 0.0) + value

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        window, baseline, cfg = self.window, self.baseline, self.config
        if now >= window.expires_from:
            for index, sums in window.expire(now):
                if not self.abnormal:  # never learn from the anomaly being flagged
                    baseline.fold(index * window.bucket_s, sums)
        totals = window.totals
        n, tokens, cached = totals.get("n", 0.0), totals.get("in", 0.0), totals.get("cr", 0.0)
        if n < cfg.min_requests or tokens < cfg.min_input_tokens:
            # too quiet to judge (a night): an active episode holds rather than resolving and re-paging
            return [self.last_finding] if self.abnormal and self.last_finding is not None else []
        was_abnormal = self.abnormal
        self.abnormal, self.last_finding = False, None
        base_tokens = baseline.get("in")
        if base_tokens < cfg.min_baseline_input_tokens:
            return []
        base_ratio = baseline.get("cr") / base_tokens
        ratio = cached / tokens
        if base_ratio < cfg.min_baseline_ratio or ratio >= cfg.wasteful_ratio or ratio > base_ratio * (1 - cfg.min_drop):
            return []
        price_per_token = window.get("value") / tokens  # micro-dollars per input token, volume-weighted
        wasted = (base_ratio * tokens - cached) * price_per_token * _CACHE_DISCOUNT
        if price_per_token and wasted < cfg.min_wasted_usd * MICROS and not was_abnormal:
            return []  # the money guard starts an episode; only a recovered ratio ends it
        self.abnormal = True
        who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        money = f": about {usd(wasted)} of extra input spend" if price_per_token else ""
        summary = (
            f"{ctx.scope} {who or ctx.subject}: prompt-cache hit ratio {ratio:.0%} over the last "
            f"{cfg.window_minutes} min ({int(n)} requests, {tokens / 1e6:.1f}M input tokens), "
            f"down from {base_ratio:.0%}{money}"
        )
        self.last_finding = Finding(
            abnormal=True, observed=round(ratio, 4), expected=round(base_ratio, 4), unit="ratio", summary=summary,
            root_cause_kinds=("model", "session", "tag"),
            details={"window_input_tokens": int(tokens), "window_cache_read_tokens": int(cached),
                     "estimated_extra_usd": round(wasted / MICROS, 2)},
        )
        return [self.last_finding]
