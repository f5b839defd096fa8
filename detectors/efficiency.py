"""efficiency: spend (or tokens) per accepted outcome trending up while outcomes do not.

Outcome events (:class:`~spendwatch.schemas.outcome.OutcomeEvent`: a task accepted, a PR
merged) say what the spend produced. Over the last ``window_hours`` the detector divides
the subject's spend (or input + output tokens, ``metric``) by its accepted outcomes (the
``outcome_kinds``, weighted by their ``value``) and compares that with a baseline kept as
exponentially decayed hourly sums (``baseline_half_life_hours``, a week by default). It
pages when the cost per outcome is at least ``factor`` x the baseline's while outcomes per
hour are no more than ``max_outcome_growth`` x the baseline's -- spending more to get
more done is growth, not decay. The window's single most expensive session (from the
engine's 24-hour contributors) is left out of its cost, so one large but ordinary session
is not mistaken for a trend. Volume guards (``min_outcomes``, ``min_baseline_outcomes``,
``min_window_spend_usd``, and a baseline at least one window long) keep quiet days, new and
sparse keys and keys that report no outcomes out of it. The baseline does not learn while an episode is active.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, micros_threshold, usd
from spendwatch.detectors.rolling import BucketWindow, DecayedSums

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, EfficiencyConfig

_HOUR = 3600.0


class Efficiency(Detector):
    """Cost per accepted outcome over the window against the decayed baseline.

    Examples
    --------
    Two days at $2 per accepted task (one task and $2 an hour); then sessions grow and
    each task costs $5 while tasks keep coming at the same pace:

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, EfficiencyConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {"key_alias": "dev-ana"})
    >>> eff = Efficiency(EfficiencyConfig(), BaselineConfig(), "key", "k1")
    >>> def hour(ts, dollars):
    ...     findings = []
    ...     for obs in (Observation("request", ts, cost=int(dollars * MICROS), input_tokens=9_000),
    ...                 Observation("outcome", ts + 1_800, cost_known=False, outcome_kind="task_accepted",
    ...                             outcome_value=1.0)):
    ...         eff.learn_one(obs, ctx)
    ...         findings += eff.score_one(ctx, obs.ts, obs)
    ...     return findings
    >>> t0 = 1_762_041_600.0
    >>> [f for h in range(48) for f in hour(t0 + h * 3600, 2.0)]
    []
    >>> for h in range(48, 96):
    ...     findings = hour(t0 + h * 3600, 5.0)
    ...     if findings:
    ...         break
    >>> h - 48, findings[0].summary
    (14, 'key dev-ana: $4.04 per accepted outcome over the last 24h (23 outcomes, $93.00), 2.0x the usual $2.00, while outcomes are 1.0x their usual rate')
    """

    name = "efficiency"
    parts = {"window": BucketWindow, "baseline": DecayedSums}
    kinds = frozenset({"request", "outcome"})
    config: EfficiencyConfig

    def __init__(self, config: EfficiencyConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.window = BucketWindow(config.window_hours * _HOUR, _HOUR)
        self.baseline = DecayedSums(config.baseline_half_life_hours * _HOUR)
        self.last_folded: int | None = None
        self.abnormal = False
        self.last_finding: Finding | None = None

    def derive(self) -> None:
        self._cfg_min_spend = micros_threshold(self.config.min_window_spend_usd)
        self._cfg_usd = self.config.metric == "usd"

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        if obs.kind == "outcome":
            if obs.outcome_kind in self.config.outcome_kinds:
                self.window.add(obs.ts, {"o": obs.outcome_value})
            return
        usd = float(obs.cost)
        cost = usd if self._cfg_usd else float(obs.input_tokens + obs.output_tokens)
        for sums in (self.window.bucket_at(obs.ts), self.window.totals):  # add(ts, {"c": cost, "usd": usd})
            sums["c"] = sums.get("c", 0.0) + cost
            sums["usd"] = sums.get("usd", 0.0) + usd

    def _fold(self, now: float) -> None:
        for index, sums in self.window.expire(now):
            hours = 1.0 if self.last_folded is None else float(index - self.last_folded)
            self.last_folded = index
            if not self.abnormal:  # never learn from the anomaly being flagged
                self.baseline.fold(index * _HOUR, {**sums, "h": hours})

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        cfg, window, baseline = self.config, self.window, self.baseline
        if now >= window.expires_from:
            self._fold(now)
        totals = window.totals
        outcomes, cost, spent = totals.get("o", 0.0), totals.get("c", 0.0), totals.get("usd", 0.0)
        if outcomes < cfg.min_outcomes or spent < self._cfg_min_spend:
            # too quiet to judge (a weekend): an active episode holds rather than resolving and re-paging
            return [self.last_finding] if self.abnormal and self.last_finding is not None else []
        self.abnormal, self.last_finding = False, None
        base_outcomes, base_cost, base_hours = baseline.get("o"), baseline.get("c"), baseline.get("h")
        if base_outcomes < cfg.min_baseline_outcomes or base_hours < cfg.window_hours or base_cost <= 0:
            return []
        base_per_outcome = base_cost / base_outcomes
        growth = (outcomes / cfg.window_hours) / (base_outcomes / base_hours)
        if cost / outcomes < cfg.factor * base_per_outcome or growth > cfg.max_outcome_growth:
            return []
        top_sessions = ctx.contributors.day.totals("session")  # only now: it is the costly part
        if top_sessions:  # leave the single biggest session out: one big run is no trend
            cost -= cost * min(1.0, top_sessions[0][1] / spent)
        per_outcome = cost / outcomes
        ratio = per_outcome / base_per_outcome
        if ratio < cfg.factor:
            return []
        self.abnormal = True
        who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        if cfg.metric == "usd":
            now_s, usual_s, total = usd(per_outcome), usd(base_per_outcome), usd(cost)
        else:
            now_s, usual_s = f"{per_outcome:,.0f} tokens", f"{base_per_outcome:,.0f} tokens"
            total = f"{cost / 1e6:.1f}M tokens, {usd(window.get('usd'))}"
        summary = (
            f"{ctx.scope} {who or ctx.subject}: {now_s} per accepted outcome over the last {cfg.window_hours}h "
            f"({outcomes:.0f} outcomes, {total}), {ratio:.1f}x the usual {usual_s}, while outcomes are "
            f"{growth:.1f}x their usual rate"
        )
        self.last_finding = Finding(
            abnormal=True, observed=round(per_outcome / MICROS if cfg.metric == "usd" else per_outcome, 4),
            expected=round(base_per_outcome / MICROS if cfg.metric == "usd" else base_per_outcome, 4),
            unit="usd" if cfg.metric == "usd" else "tokens", summary=summary, window="day",
            details={"outcomes": outcomes, "ratio": round(ratio, 2), "outcome_rate_ratio": round(growth, 2),
                     "metric": cfg.metric},
        )
        return [self.last_finding]
