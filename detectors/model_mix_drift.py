"""model_mix_drift: a subject suddenly routing most requests (or spend) to a model it rarely used.

Over the last ``window_minutes`` the detector measures each model's and each price tier's
share of the subject's requests and of its spend, against a baseline mix kept as
exponentially decayed counts (``baseline_half_life_hours``) of everything that has left
the window. It pages when one model -- or one tier -- takes at least ``min_share`` of the
window's requests or spend while it had less than ``rare_share`` of the baseline's, the
window's cost per request is at least ``cost_per_request_factor`` x the baseline's (a move
to cheaper models is not a page), and there is enough volume on both sides
(``min_requests``, ``min_window_spend_usd``, ``min_baseline_requests``; a new key waits
``min_history_hours``). While the window is too quiet to judge, an active episode holds its
last verdict instead of resolving overnight and paging again the next morning.

Tiers (``frontier``, ``standard``, ``economy``) come from the price table through
:func:`spendwatch.schemas.pricing.price_tier` -- no model list is hard-coded -- so "80% of
requests moved to a frontier model" is caught even when the frontier model is new.
Because the baseline keeps learning, a deliberate lasting switch becomes the new normal
after a while and the episode resolves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, micros_threshold, usd
from spendwatch.detectors.rolling import BucketWindow, DecayedSums
from spendwatch.schemas.pricing import TierThresholds, price_tier

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, ModelMixDriftConfig

_BUCKETS = 6
_MAX_CATEGORIES = 48
_TIERS: dict[tuple[str, str | None, object, object], str] = {}
#: per tier thresholds: (model, provider) -> the window names a request adds to (built once, not per request):
#: requests and micro-dollars in total, of its model and of its tier
_FIELD_CACHES: dict[tuple[object, object], dict[tuple[str, str | None], tuple[str, ...]]] = {}


def _tier(model: str, provider: str | None, tiers: TierThresholds) -> str:
    """:func:`price_tier`, memoised on plain values (hashing the pydantic thresholds per request is slow)."""
    key = (model, provider, tiers.frontier_min_input_per_mtok, tiers.economy_max_input_per_mtok)
    tier = _TIERS.get(key)
    if tier is None:
        if len(_TIERS) > 4096:
            _TIERS.clear()
        tier = _TIERS[key] = price_tier(model, provider, tiers)
    return tier


class ModelMixDrift(Detector):
    """Recent model / price-tier mix against the subject's decayed baseline mix.

    Examples
    --------
    A developer on claude-sonnet-4-5 and claude-haiku-4-5 for a day, who then sends 85%
    of their requests to claude-opus-4-1: the page comes once opus carries most of the
    last hour's spend, 7 calls in:

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, ModelMixDriftConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {"key_alias": "dev-ana"})
    >>> drift = ModelMixDrift(ModelMixDriftConfig(), BaselineConfig(), "key", "k1")
    >>> def call(ts, model, dollars):
    ...     obs = Observation("request", ts, cost=int(dollars * MICROS), model=model, provider="anthropic")
    ...     drift.learn_one(obs, ctx)
    ...     return drift.score_one(ctx, ts, obs)
    >>> t0 = 1_762_041_600.0
    >>> pages = [f for i in range(24 * 30)          # a day, 30 calls an hour, 3 in 4 on sonnet
    ...          for f in call(t0 + i * 120, "claude-sonnet-4-5" if i % 4 else "claude-haiku-4-5", 0.05)]
    >>> [f for f in pages if f.abnormal]
    []
    >>> t1 = t0 + 86_400
    >>> for i in range(40):                          # then 17 of every 20 calls go to opus
    ...     findings = call(t1 + i * 90, "claude-opus-4-1" if i % 20 < 17 else "claude-sonnet-4-5", 0.30)
    ...     if findings and findings[0].abnormal:
    ...         break
    >>> i, findings[0].summary
    (6, 'key dev-ana: 22% of requests (63% of spend, $2.10) in the last 60 min went to claude-opus-4-1 (frontier), which had 0% of its baseline; cost per request 2.1x baseline')
    """

    name = "model_mix_drift"
    parts = {"window": BucketWindow, "baseline": DecayedSums}
    config: ModelMixDriftConfig

    def __init__(self, config: ModelMixDriftConfig, baseline_config: BaselineConfig, scope: str,
                 subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        window_s = config.window_minutes * 60
        self.window = BucketWindow(window_s, window_s / _BUCKETS)
        self.baseline = DecayedSums(config.baseline_half_life_hours * 3600, max_names=_MAX_CATEGORIES)
        self.first_ts: float | None = None
        self.last_finding: Finding | None = None  # held while the window is too quiet to judge

    def derive(self) -> None:
        tiers = self.config.tiers
        self._cfg_min_spend = micros_threshold(self.config.min_window_spend_usd)
        # window names of (model, provider) under these thresholds, shared by every subject with this config
        self._cfg_fields = _FIELD_CACHES.setdefault(
            (tiers.frontier_min_input_per_mtok, tiers.economy_max_input_per_mtok), {})

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        if self.first_ts is None:
            self.first_ts = obs.ts
        model, provider = obs.model, obs.provider
        names = self._cfg_fields.get((model, provider))
        if names is None:
            fields = self._cfg_fields
            if len(fields) > 4096:
                fields.clear()
            tier = _tier(model, provider, self.config.tiers)
            names = fields[(model, provider)] = ("n", "c", f"n:m:{model}", f"c:m:{model}", f"n:t:{tier}", f"c:t:{tier}")
        cost = float(obs.cost)
        _, _, model_n, model_c, tier_n, tier_c = names
        # add(ts, dict(zip(names, (1.0, cost) * 3))) without the dict and loop, per request
        for sums in (self.window.bucket_at(obs.ts), self.window.totals):
            get = sums.get
            sums["n"] = get("n", 0.0) + 1.0
            sums["c"] = get("c", 0.0) + cost
            sums[model_n] = get(model_n, 0.0) + 1.0
            sums[model_c] = get(model_c, 0.0) + cost
            sums[tier_n] = get(tier_n, 0.0) + 1.0
            sums[tier_c] = get(tier_c, 0.0) + cost

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        window, baseline, cfg = self.window, self.baseline, self.config
        if now >= window.expires_from:
            for index, sums in window.expire(now):
                baseline.fold(index * window.bucket_s, sums)
        totals, sums = window.totals, baseline.sums
        n, spent = totals.get("n", 0.0), totals.get("c", 0.0)
        base_n, base_c = sums.get("n", 0.0), sums.get("c", 0.0)
        if n < cfg.min_requests or spent < self._cfg_min_spend:
            # too quiet to judge (a night): an active episode holds rather than resolving and re-paging
            return [self.last_finding] if self.last_finding is not None else []
        self.last_finding = None
        if base_n < cfg.min_baseline_requests or now - (self.first_ts or now) < cfg.min_history_hours * 3600:
            return []
        cost_ratio = (spent / n) / (base_c / base_n) if base_c > 0 else float("inf")
        if cost_ratio < cfg.cost_per_request_factor:
            return []
        drifted = self._drifted(n, spent, base_n, base_c)
        if drifted is None:
            return []
        kind, name, share_n, share_c, base_share = drifted
        what = name if kind == "m" else f"{name}-tier models"
        model_tier = _tier(name, None, cfg.tiers) if kind == "m" else "unknown"
        tier = f" ({model_tier})" if model_tier != "unknown" else ""
        who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        summary = (
            f"{ctx.scope} {who or ctx.subject}: {share_n:.0%} of requests ({share_c:.0%} of spend, "
            f"{usd(window.get(f'c:{kind}:{name}'))}) in the last {cfg.window_minutes} min went to {what}{tier}, "
            f"which had {base_share:.0%} of its baseline; cost per request {cost_ratio:.1f}x baseline"
        )
        self.last_finding = Finding(
            abnormal=True, observed=round(max(share_n, share_c), 4), expected=round(base_share, 4), unit="ratio",
            summary=summary, root_cause_kinds=("model", "session", "tag"),
            details={"drifted": name, "level": "model" if kind == "m" else "tier", "request_share": round(share_n, 4),
                     "spend_share": round(share_c, 4), "baseline_share": round(base_share, 4),
                     "cost_per_request_ratio": round(cost_ratio, 2), "window_requests": int(n)},
        )
        return [self.last_finding]

    def _drifted(self, n: float, spent: float, base_n: float, base_c: float) -> tuple[str, str, float, float, float] | None:
        """The most expensive model (then tier) that took over the window while rare in the baseline."""
        cfg, totals, baseline = self.config, self.window.totals, self.baseline
        best = None
        for kind in ("m", "t"):
            prefix = f"n:{kind}:"
            for name_key, count in totals.items():
                if not name_key.startswith(prefix):
                    continue
                name = name_key[len(prefix):]
                cost = totals.get(f"c:{kind}:{name}", 0.0)
                share_n, share_c = count / n, (cost / spent if spent else 0.0)
                if max(share_n, share_c) < cfg.min_share:
                    continue
                base_share = max(baseline.get(name_key) / base_n,
                                 baseline.get(f"c:{kind}:{name}") / base_c if base_c else 0.0)
                if base_share >= cfg.rare_share:
                    continue
                if best is None or cost > best[0]:
                    best = (cost, (kind, name, share_n, share_c, base_share))
            if best is not None:
                return best[1]
        return None
