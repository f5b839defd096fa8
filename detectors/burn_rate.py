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
``min_excess_usd_per_hour`` above it *and* it still would be without the spend of its
biggest session: one heavy session is session_burn's to judge, against the key's own session
costs (they are heavy-tailed: a key's biggest session of the week can cost a hundred of its usual ones).

The model learns one point per hour (the rate over the window ending with that hour).
An hour in which the detector reported an anomaly, or whose rate scores above the
threshold, is *held*: a runaway loop must not teach the model that burning is normal, but
the model must not lock out either. When the run of flagged hours ends, its hours count at
a tenth of the usual weight; when it lasts ``relearn_hours``, the shift is the new normal.

Second condition (off unless ``projection_factor`` is set: spend_spike projects the day with
evidence counted in sessions): the day-end projection. With the subject's daily baseline, the spend
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

    The expected rate is the hour-of-week profile times ``exp(level)``, where ``level`` is an
    exponentially weighted mean of the learned log residuals: the profile holds the shape of
    the week, the level follows a key that grows, shrinks or shifts. The score is the
    one-sided Gaussian tail of the newest residual against the exponentially weighted spread
    of the learned ones.

    Points the caller flags are *held*, not learned at once (a loop must not teach the model
    that burning is normal), and never locked out: when a run of flagged points ends, they are
    learned at ``flagged_weight``; when a run lasts ``relearn_points`` points, the shift is the
    new normal and the level moves to it at once.

    Parameters
    ----------
    alpha
        Weight of the newest point in its hour-of-week slot (and in the global level).
    grace_period
        Residuals learned (points whose hour of the day was seen before) before
        :meth:`score_one` returns anything but 0.
    floor
        Added to observed and expected before taking their log ratio, so tiny absolute
        changes are not anomalies. ``None``: 10% of the global level.
    relearn_points
        A run of this many flagged points becomes the new normal.
    flagged_weight
        Weight of a held point in the level when its run ends before ``relearn_points``.

    Examples
    --------
    A rate of 10 every hour, with the odd 12; then 60:

    >>> scorer = SeasonalBurnScorer(grace_period=48, floor=1.0)
    >>> for h in range(24 * 9):
    ...     scorer.learn_one(h * 3600.0, 12.0 if h % 7 == 0 else 10.0)
    >>> round(scorer.expected(24 * 7 * 3600.0 + 3600)), round(scorer.expected(24 * 7 * 3600.0))
    (10, 12)
    >>> round(scorer.score_one(24 * 7 * 3600.0, 10.0), 3), round(scorer.score_one(24 * 7 * 3600.0, 60.0), 3)
    (0.0, 1.0)

    Five times the rate for good: flagged, held, and the new normal after ``relearn_points`` hours:

    >>> t = 24 * 7 * 3600.0
    >>> flagged = []
    >>> for h in range(30):
    ...     score = scorer.score_one(t + h * 3600, 50.0)
    ...     flagged.append(score > 0.999)
    ...     scorer.learn_one(t + h * 3600, 50.0, flagged=score > 0.999)
    >>> flagged.index(False) <= scorer.relearn_points, 45 < scorer.expected(t + 30 * 3600) < 55
    (True, True)
    """

    __slots__ = ("alpha", "floor", "profile", "seen", "daily", "daily_seen", "level", "grace_period", "residuals",
                 "learned", "shift", "spread", "held", "relearn_points", "flagged_weight")

    #: Weight of the newest residual in the level and in the spread (about a day and a half of hours).
    LEVEL_ALPHA = 0.03

    def __init__(self, alpha: float = 0.06, grace_period: int = 144, floor: float | None = None,
                 relearn_points: int = 12, flagged_weight: float = 0.1) -> None:
        self.alpha = alpha
        self.floor = floor
        self.profile = array("d", bytes(8 * WEEK_HOURS))
        self.seen = array("B", bytes(WEEK_HOURS))
        self.daily = array("d", bytes(8 * 24))  # hour-of-day profile: the fallback in the first week
        self.daily_seen = array("B", bytes(24))
        self.level = stats.EWMean(fading_factor=alpha)
        self.grace_period = grace_period
        self.residuals = stats.Var()  # count of the learned log ratios (their mean and spread: shift, spread)
        self.learned = 0
        self.shift = 0.0  # exponentially weighted mean of the learned log residuals
        self.spread = 0.0  # exponentially weighted variance of the learned log residuals around ``shift``
        self.held: list[tuple[float, float]] = []  # the current run of flagged points, not learned yet
        self.relearn_points = relearn_points
        self.flagged_weight = flagged_weight

    @property
    def n(self) -> int:
        return int(self.residuals.mean.n)

    # -- snapshots: arrays as bytes, river statistics as tuples (see spendwatch.detectors.snapshot) --
    def __getstate__(self) -> tuple[Any, ...]:
        return (self.alpha, self.floor, self.profile.tobytes(), self.seen.tobytes(), self.daily.tobytes(),
                self.daily_seen.tobytes(), ewmean_state(self.level), self.grace_period, var_state(self.residuals),
                self.learned, self.shift, self.spread, tuple(self.held), self.relearn_points, self.flagged_weight)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if state[0] is None:  # written before snapshot version 2: (None, slots) with the objects
            for name, value in state[1].items():
                setattr(self, name, value)
            self._restore_residuals()
            return
        (self.alpha, self.floor, profile, seen, daily, daily_seen, level, self.grace_period, residuals,
         self.learned, *rest) = state
        self.profile, self.seen = array("d", profile), array("B", seen)
        self.daily, self.daily_seen = array("d", daily), array("B", daily_seen)
        self.level, self.residuals = restore_ewmean(level), restore_var(residuals)
        if rest:
            self.shift, self.spread, held, self.relearn_points, self.flagged_weight = rest
            self.held = list(held)
        else:
            self._restore_residuals()

    def _restore_residuals(self) -> None:
        """A scorer saved before the shift and spread: start them from its residual statistics."""
        self.shift = self.residuals.mean.get()
        self.spread = self.residuals.get()
        self.held = []
        self.relearn_points, self.flagged_weight = 12, 0.1

    def _profile(self, ts: float) -> float:
        hour = int(ts) // HOUR
        how = hour_of_week(hour)
        if self.seen[how]:
            return self.profile[how]
        return self.daily[hour % 24] if self.daily_seen[hour % 24] else self.level.get()

    def _floor(self) -> float:
        return self.floor if self.floor is not None else 0.1 * self.level.get() + 1e-9

    def expected(self, ts: float) -> float:
        """Expected value at ``ts``: its hour of week (else its hour of day, else the global level) x the shift."""
        floor = self._floor()
        return max(0.0, (self._profile(ts) + floor) * math.exp(self.shift) - floor)

    def residual(self, ts: float, value: float) -> float:
        floor = self._floor()
        return math.log(max(value, 0.0) + floor) - math.log(self._profile(ts) + floor)

    def score_one(self, ts: float, value: float) -> float:
        """Anomaly score in [0, 1] of ``value`` at ``ts``; only excess counts (burning less is not an anomaly)."""
        if self.residuals.mean.n < self.grace_period:
            return 0.0
        deviation = self.residual(ts, value) - self.shift
        if deviation <= 0:
            return 0.0
        if self.spread <= 0:
            return 1.0
        return math.erf(deviation / math.sqrt(2 * self.spread))

    def learn_one(self, ts: float, value: float, flagged: bool = False) -> None:
        """Learn a point; a ``flagged`` one is held until its run ends or becomes the new normal."""
        if flagged:
            self.held.append((ts, value))
            if len(self.held) >= self.relearn_points:  # a run this long is the new normal
                residuals = sorted(self.residual(t, v) for t, v in self.held)
                self.shift = residuals[len(residuals) // 2]
                held, self.held = self.held, []
                for t, v in held:
                    self._learn(t, v, 1.0)
            return
        if self.held:  # the run ended: what it held counts a little
            held, self.held = self.held, []
            for t, v in held:
                self._learn(t, v, self.flagged_weight)
        self._learn(ts, value, 1.0)

    def _learn(self, ts: float, value: float, weight: float) -> None:
        hour = int(ts) // HOUR
        if self.seen[hour_of_week(hour)] or self.daily_seen[hour % 24]:  # not against the bare global level
            r = self.residual(ts, value)
            self.residuals.update(r)
            if self.residuals.mean.n <= 1 / self.LEVEL_ALPHA:  # a plain mean and variance to start with
                alpha = 1 / self.residuals.mean.n
            else:
                alpha = self.LEVEL_ALPHA * weight
            delta = r - self.shift
            self.shift += alpha * delta
            self.spread = (1 - alpha) * (self.spread + alpha * delta * delta)
        self.learned += 1
        if weight < 1:
            return  # a held point moves the level only, not the week's shape
        # the profile learns the value without the shift, so the shape stays the shape
        floor = self._floor()
        value = (max(value, 0.0) + floor) * math.exp(-self.shift) - floor
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
    A key burning about $2/hour around the clock for nine days, then a runaway loop at
    $300/hour: it pages within minutes (here first on the day-end projection, which is off by default).

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, BurnRateConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {})
    >>> burn = BurnRate(BurnRateConfig(projection_factor=3), BaselineConfig(), "key", "k1")
    >>> t0 = 1_762_128_000.0                                  # 2025-11-03, a Monday
    >>> for minute in range(0, 9 * 24 * 60, 3):              # $0.10 every 3 minutes
    ...     obs = Observation("request", t0 + minute * 60, cost=100_000 + (minute % 7) * 5_000)
    ...     ctx.baseline.learn_one(obs.ts, obs.cost); burn.learn_one(obs, ctx)
    >>> start = t0 + 9 * 86400
    >>> for second in range(0, 1200, 6):                      # $0.50 every 6 s = $300/hour
    ...     obs = Observation("request", start + second, cost=500_000)
    ...     ctx.baseline.learn_one(obs.ts, obs.cost); burn.learn_one(obs, ctx)
    ...     finding = burn.score_one(ctx, obs.ts, obs)[0]
    ...     if finding.abnormal:
    ...         break
    >>> print(f"paged after {second // 60} minutes:", finding.summary)
    paged after 4 minutes: key k1: at this burn rate the day ends at $167.49, 3.0x its 7-day daily mean of $55.20 ($23.00 spent so far today)

    Without the projection, the rate model alone:

    >>> burn.config = BurnRateConfig()
    >>> for second in range(second, 2400, 6):
    ...     obs = Observation("request", start + second, cost=500_000)
    ...     ctx.baseline.learn_one(obs.ts, obs.cost); burn.learn_one(obs, ctx)
    ...     finding = burn.score_one(ctx, obs.ts, obs)[0]
    ...     if finding.abnormal:
    ...         break
    >>> print(f"paged after {second // 60} minutes:", finding.summary)
    paged after 20 minutes: key k1 is burning $102.63/h over the last 60 min, 44.3x its usual $2.31/h for this hour of the week
    """

    name = "burn_rate"
    config: BurnRateConfig
    parts = {"scorer": SeasonalBurnScorer}

    def __init__(self, config: BurnRateConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.scorer = SeasonalBurnScorer(
            alpha=baseline_config.profile_alpha, grace_period=config.grace_hours,
            floor=float(config.min_excess_usd_per_hour) * MICROS, relearn_points=config.relearn_hours,
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
                flagged = self.flagged or self.scorer.score_one(at, rate) >= self.config.score_threshold
                self.scorer.learn_one(at, rate, flagged=flagged)
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
                if score >= cfg.score_threshold and not self._one_session(ctx, rate, expected):
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

    def _one_session(self, ctx: Context, rate: float, expected: float) -> bool:
        """Whether the burn is one session's: without its spend the rate would pass neither guard.

        Sessions' costs are heavy-tailed (a key's biggest session of the week can cost a hundred of its
        usual ones); whether one is too big for its key is session_burn's question, judged against the
        key's own session costs. burn_rate pages a key burning on more than one session.
        """
        sessions = ctx.contributors.short.totals("session")
        if not sessions:
            return False
        # the top session's spend over the last 1-2 hours bounds its share of the window
        top = min(sessions[0][1], rate * self._cfg_window_hours) / self._cfg_window_hours
        rest = rate - top
        return rest < self.config.min_ratio * expected or rest - expected < self._cfg_min_excess

    def _projection(self, ctx: Context, now: float, rate: float, expected: float | None) -> float | None:
        """Projected day-end spend (micro-dollars) when it crosses the page line, else None."""
        baseline, cfg = ctx.baseline, self.config
        if cfg.projection_factor is None or expected is None or not baseline.has_history or not baseline.daily_mean:
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
