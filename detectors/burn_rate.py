"""burn_rate: sub-hourly burn anomalies against an hour-of-week seasonal online model.

The burn rate is the spend over the last ``window_minutes`` (the current, partial
bucket included, so a runaway loop is seen while it runs) in dollars per hour. Its
expected value comes from :class:`SeasonalBurnScorer`: an exponentially weighted
profile of the rate for each of the 168 hours of the week (with a global level as
fallback for hours not seen yet), and a Gaussian scorer over the log ratio of observed
to expected: ``river.stats.Var`` (Welford) of the residuals, score ``2|CDF - 0.5|`` as
in ``river.anomaly.GaussianScorer`` (whose ``river.proba`` import pulls in SciPy and
costs seconds at worker start-up for the same arithmetic). A window is anomalous when the score is above
``score_threshold`` *and* the rate is ``min_ratio`` times expected *and*
``min_excess_usd_per_hour`` above it.

The model learns one point per hour (the rate over the window ending with that hour),
and never a point that was flagged: an hour in which the detector reported an anomaly,
or whose rate scores above the threshold, is skipped, so a runaway loop cannot teach the
model that burning is normal.

Second condition: the day-end projection. With the subject's daily baseline, the spend
so far today plus the rest of the day's expected spend (hour-of-week profile) scaled by
the observed/expected ratio of the burn over the last ``projection_window_minutes`` (each side
plus one average hour; a short burst does not make a day); page when that exceeds ``projection_factor`` x the 7-day
daily mean by at least ``projection_min_excess_usd`` while that ratio is at least
``projection_min_ratio`` (so it ends with the burst that caused it).

Before the model has learned ``grace_hours`` hours only the absolute guard
``absolute_usd_per_hour`` applies.
"""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, Any

from river import stats

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd
from spendwatch.detectors.baseline import HOUR, WEEK_HOURS, hour_of_week
from spendwatch.detectors.snapshot import ewmean_state, restore_ewmean, restore_var, var_state

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, BurnRateConfig

#: At most one week of silent buckets is learned when a subject wakes up after a gap.
_MAX_CATCH_UP_HOURS = WEEK_HOURS


class SeasonalBurnScorer:
    """Online anomaly scorer of a rate, seasonal by hour of week (river-style).

    Parameters
    ----------
    alpha
        Weight of the newest point in its hour-of-week slot (and in the global level).
    grace_period
        Points learned before :meth:`score_one` returns anything but 0.
    floor
        Added to observed and expected before taking their log ratio, so tiny absolute
        changes are not anomalies. ``None``: 10% of the global level.

    Examples
    --------
    A rate of 10 every hour, with the odd 12; then 60:

    >>> scorer = SeasonalBurnScorer(grace_period=48, floor=1.0)
    >>> for h in range(24 * 7):
    ...     scorer.learn_one(h * 3600.0, 12.0 if h % 7 == 0 else 10.0)
    >>> scorer.expected(24 * 7 * 3600.0 + 3600), scorer.expected(24 * 7 * 3600.0)
    (10.0, 12.0)
    >>> round(scorer.score_one(24 * 7 * 3600.0, 10.0), 3), round(scorer.score_one(24 * 7 * 3600.0, 60.0), 3)
    (0.0, 1.0)
    """

    __slots__ = ("alpha", "floor", "profile", "seen", "daily", "daily_seen", "level", "grace_period", "residuals",
                 "learned")

    def __init__(self, alpha: float = 0.06, grace_period: int = 144, floor: float | None = None) -> None:
        self.alpha = alpha
        self.floor = floor
        self.profile = array("d", bytes(8 * WEEK_HOURS))
        self.seen = array("B", bytes(WEEK_HOURS))
        self.daily = array("d", bytes(8 * 24))  # hour-of-day profile: the fallback in the first week
        self.daily_seen = array("B", bytes(24))
        self.level = stats.EWMean(fading_factor=alpha)
        self.grace_period = grace_period
        self.residuals = stats.Var()  # mean and variance of the learned log ratios
        self.learned = 0

    @property
    def n(self) -> int:
        return int(self.residuals.mean.n)

    # -- snapshots: arrays as bytes, river statistics as tuples (see spendwatch.detectors.snapshot) --
    def __getstate__(self) -> tuple[Any, ...]:
        return (self.alpha, self.floor, self.profile.tobytes(), self.seen.tobytes(), self.daily.tobytes(),
                self.daily_seen.tobytes(), ewmean_state(self.level), self.grace_period, var_state(self.residuals),
                self.learned)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if state[0] is None:  # written before snapshot version 2: (None, slots) with the objects
            for name, value in state[1].items():
                setattr(self, name, value)
            return
        (self.alpha, self.floor, profile, seen, daily, daily_seen, level, self.grace_period, residuals,
         self.learned) = state
        self.profile, self.seen = array("d", profile), array("B", seen)
        self.daily, self.daily_seen = array("d", daily), array("B", daily_seen)
        self.level, self.residuals = restore_ewmean(level), restore_var(residuals)

    def expected(self, ts: float) -> float:
        """Expected value at ``ts``: its hour of week, else its hour of day, else the global level."""
        hour = int(ts) // HOUR
        how = hour_of_week(hour)
        if self.seen[how]:
            return self.profile[how]
        return self.daily[hour % 24] if self.daily_seen[hour % 24] else self.level.get()

    def residual(self, ts: float, value: float) -> float:
        floor = self.floor if self.floor is not None else 0.1 * self.level.get() + 1e-9
        return math.log((value + floor) / (self.expected(ts) + floor))

    def score_one(self, ts: float, value: float) -> float:
        """Anomaly score in [0, 1] of ``value`` at ``ts``; only excess counts (burning less is not an anomaly)."""
        if self.residuals.mean.n < self.grace_period:
            return 0.0
        deviation = self.residual(ts, value) - self.residuals.mean.get()
        if deviation <= 0:
            return 0.0
        sigma = math.sqrt(self.residuals.get())
        if sigma == 0:
            return 1.0
        return math.erf(deviation / (sigma * math.sqrt(2)))

    def learn_one(self, ts: float, value: float) -> None:
        if self.learned:  # the very first point has nothing to be a residual against
            self.residuals.update(self.residual(ts, value))
        self.learned += 1
        hour = int(ts) // HOUR
        # a plain mean for the first 1/alpha points of a slot, then exponentially weighted
        slots = ((self.profile, self.seen, hour_of_week(hour)), (self.daily, self.daily_seen, hour % 24))
        for profile, seen, slot in slots:
            n = seen[slot] + 1
            profile[slot] += max(self.alpha, 1 / n) * (value - profile[slot])
            if n < 255:
                seen[slot] = n
        self.level.update(value)


class BurnRate(Detector):
    """Burn-rate anomalies (seasonal online model) and the day-end projection.

    Examples
    --------
    A key burning about $2/hour around the clock for a week, then a runaway loop at
    $300/hour: it pages within minutes (first on the day-end projection).

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, BurnRateConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {})
    >>> burn = BurnRate(BurnRateConfig(), BaselineConfig(), "key", "k1")
    >>> t0 = 1_762_128_000.0                                  # 2025-11-03, a Monday
    >>> for minute in range(0, 7 * 24 * 60, 3):              # $0.10 every 3 minutes
    ...     obs = Observation("request", t0 + minute * 60, cost=100_000 + (minute % 7) * 5_000)
    ...     ctx.baseline.learn_one(obs.ts, obs.cost); burn.learn_one(obs, ctx)
    >>> start = t0 + 7 * 86400
    >>> for second in range(0, 1200, 6):                      # $0.50 every 6 s = $300/hour
    ...     obs = Observation("request", start + second, cost=500_000)
    ...     ctx.baseline.learn_one(obs.ts, obs.cost); burn.learn_one(obs, ctx)
    ...     finding = burn.score_one(ctx, obs.ts, obs)[0]
    ...     if finding.abnormal:
    ...         break
    >>> print(f"paged after {second // 60} minutes:", finding.summary)
    paged after 4 minutes: key k1: at this burn rate the day ends at $167.79, 3.0x its 7-day daily mean of $55.20 ($23.00 spent so far today)

    Without the projection, the rate model alone:

    >>> burn.config = BurnRateConfig(projection_factor=1000)
    >>> for second in range(second, 1200, 6):
    ...     obs = Observation("request", start + second, cost=500_000)
    ...     ctx.baseline.learn_one(obs.ts, obs.cost); burn.learn_one(obs, ctx)
    ...     finding = burn.score_one(ctx, obs.ts, obs)[0]
    ...     if finding.abnormal:
    ...         break
    >>> print(f"paged after {second // 60} minutes:", finding.summary)
    paged after 9 minutes: key k1 is burning $52.34/h over the last 60 min, 22.8x its usual $2.29/h for this hour of the week
    """

    name = "burn_rate"
    config: BurnRateConfig
    parts = {"scorer": SeasonalBurnScorer}

    def __init__(self, config: BurnRateConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.scorer = SeasonalBurnScorer(
            alpha=baseline_config.profile_alpha, grace_period=config.grace_hours,
            floor=float(config.min_excess_usd_per_hour) * MICROS,
        )
        self.window = array("q", bytes(8 * self._cfg_n))  # spend per bucket, the last window_minutes
        self.bucket = -1  # index of the current bucket (ts // bucket seconds)
        self.flagged = False  # an anomaly was reported during the current hour: it will not be learned

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["window"] = self.window.tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if isinstance(self.window, bytes):  # else: the array itself, from a snapshot before version 2
            self.window = array("q", self.window)

    def derive(self) -> None:
        cfg = self.config
        self._cfg_bucket_s = cfg.bucket_minutes * 60
        self._cfg_per_hour = 60 // cfg.bucket_minutes
        self._cfg_n = max(1, cfg.window_minutes // cfg.bucket_minutes)
        self._cfg_window_hours = self._cfg_n * cfg.bucket_minutes / 60
        self._cfg_min_excess = float(cfg.min_excess_usd_per_hour) * MICROS
        self._cfg_absolute = None if cfg.absolute_usd_per_hour is None else float(cfg.absolute_usd_per_hour) * MICROS
        self._cfg_projection_excess = float(cfg.projection_min_excess_usd) * MICROS

    # -- learning ------------------------------------------------------------------------
    def _advance(self, ts: float) -> None:
        """Close the buckets before ``ts``; at each hour's end learn that hour's rate (unless flagged)."""
        b = int(ts) // self._cfg_bucket_s
        c = self.bucket
        if c < 0:
            self.bucket = b
            return
        if b <= c:
            return
        window, n, per_hour = self.window, self._cfg_n, self._cfg_per_hour
        oldest = b - _MAX_CATCH_UP_HOURS * per_hour
        if c < oldest:  # a long silence: only the last week of (zero) hours is worth learning
            for i in range(n):
                window[i] = 0
            c = oldest - oldest % per_hour - 1
        while c < b:
            if (c + 1) % per_hour == 0:  # bucket c ends an hour
                rate = sum(window) / self._cfg_window_hours
                at = c * self._cfg_bucket_s
                if not self.flagged and self.scorer.score_one(at, rate) < self.config.score_threshold:
                    self.scorer.learn_one(at, rate)
                self.flagged = False
            c += 1
            window[c % n] = 0
            if c < b and not any(window):  # silent: skip to the end of this hour
                c = min(b, (c // per_hour + 1) * per_hour - 1)
        self.bucket = b

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        b = int(obs.ts) // self._cfg_bucket_s
        if b > self.bucket or self.bucket < 0:  # else _advance() has nothing to close
            self._advance(obs.ts)
        if obs.cost and b == self.bucket:
            self.window[b % self._cfg_n] += obs.cost

    # -- scoring -------------------------------------------------------------------------
    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        if obs is None:
            self._advance(now)
        elif not obs.cost:
            return []
        cfg, scorer = self.config, self.scorer
        rate = sum(self.window) / self._cfg_window_hours  # micro-dollars per hour
        warm = scorer.residuals.mean.n >= cfg.grace_hours  # scorer.n without the property and int()
        expected = scorer.expected(now) if warm else None
        reason = ""
        score = 0.0
        if expected is not None:
            # the cheap guards first; the score only for a rate that could page
            if rate >= cfg.min_ratio * expected and rate - expected >= self._cfg_min_excess:
                score = scorer.score_one(now, rate)
                if score >= cfg.score_threshold:
                    reason = "rate"
        elif self._cfg_absolute is not None and rate >= self._cfg_absolute:
            reason = "absolute"
        projected = None if expected is None else self._projection(ctx, now, rate, expected)
        if not reason and projected is not None:
            reason = "projection"
        if not reason and not ctx.normal_findings:
            return []
        finding = Finding(abnormal=bool(reason), observed=rate / MICROS, unit="usd_per_hour",
                          expected=None if expected is None else expected / MICROS)
        if reason:
            self.flagged = True
            finding.summary = self._summary(ctx, reason, rate, expected, projected)
            finding.details = {"trigger": reason, "score": round(score, 6), "window_minutes": cfg.window_minutes,
                               "projected_day_usd": None if projected is None else round(projected / MICROS, 2),
                               "spent_today_usd": round(ctx.baseline.today / MICROS, 2)}
        return [finding]

    def _projection(self, ctx: Context, now: float, rate: float, expected: float | None) -> float | None:
        """Projected day-end spend (micro-dollars) when it crosses the page line, else None."""
        baseline, cfg = ctx.baseline, self.config
        if expected is None or not baseline.has_history or not baseline.daily_mean:
            return None
        mean = baseline.daily_mean
        floor = mean / 24  # one average hour: damps the ratio of a key that barely spends in these hours
        if (rate + floor) < cfg.projection_min_ratio * (expected + floor):
            return None  # not burning fast now: nothing to project
        seconds = cfg.projection_window_minutes * 60
        sustained = baseline.recent_sum(now, seconds) * 3600 / seconds
        hours = max(1, seconds // 3600)
        usual = sum(self.scorer.expected(now - k * 3600) for k in range(hours)) / hours
        ratio = (min(rate, sustained) + floor) / (max(expected, usual) + floor)
        if ratio < cfg.projection_min_ratio:
            return None
        line = max(cfg.projection_factor * mean, mean + self._cfg_projection_excess)
        projected = baseline.today + ratio * baseline.expected_rest_of_day(now)
        return projected if projected > line else None

    def _summary(self, ctx: Context, reason: str, rate: float, expected: float | None,
                 projected: float | None) -> str:
        alias = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        who = f"{ctx.scope} {alias or ctx.subject}"
        minutes = self.config.window_minutes
        if reason == "rate":
            return (f"{who} is burning {usd(rate)}/h over the last {minutes} min, "
                    f"{rate / max(expected or 1, 1):.1f}x its usual {usd(expected or 0)}/h for this hour of the week")
        if reason == "absolute":
            return (f"{who} is burning {usd(rate)}/h over the last {minutes} min, over the absolute guard of "
                    f"{usd(float(self.config.absolute_usd_per_hour or 0) * MICROS)}/h (no baseline yet)")
        mean = ctx.baseline.daily_mean
        return (f"{who}: at this burn rate the day ends at {usd(projected or 0)}, "
                f"{(projected or 0) / mean:.1f}x its 7-day daily mean of {usd(mean)} "
                f"({usd(ctx.baseline.today)} spent so far today)")
