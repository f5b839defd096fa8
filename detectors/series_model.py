"""An online scorer for any numeric series: seasonal level model + anomaly likelihood.

Two river-style parts, combined by :class:`SeriesScorer`:

* :class:`SeasonalLevel` predicts the next value as ``level + sum of seasonal offsets``
  (additive Holt-Winters in error-correction form, one offset table per seasonal
  period, slots chosen from the timestamp so gaps and missing rows keep the phase).
  The raw score of a value is its residual in units of the running mean absolute
  residual, clipped to :data:`RAW_CLIP`. Any finite value works: negative, zero, constant.
* :class:`AnomalyLikelihood` turns raw scores into a calibrated score in [0, 1] in the
  sense of Numenta's anomaly likelihood: the mean raw score of the last
  ``short_window`` rows is compared with the distribution (exponentially weighted mean
  and variance) of raw scores over the last ``long_window`` rows, and the score is the
  probability mass of that distribution closer to its mean than the short-window
  mean is (``2 * Phi(z) - 1``, 0 at or below the mean). A constant series scores 0.

Flagged rows (score at or above ``threshold``) are still learned, at ``flagged_weight``
of the usual weight: an isolated anomaly barely moves the model, and a persistent level
shift becomes the new normal within a bounded number of rows instead of locking the
model out (every later row scoring 1) as a never-learn-flagged-rows rule would.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Sequence
from statistics import median

#: Raw scores (residuals in mean-absolute-residual units) are clipped here, so one huge
#: value cannot dominate the long-window statistics for ever.
RAW_CLIP = 25.0
#: Seasonal offset tables have at most this many slots (a slot may span several rows).
MAX_SLOTS = 288  # a day of 5-minute slots
#: The weekly season is hour-of-week at most: it holds what the daily one cannot (weekdays vs weekends).
WEEK_SLOTS = 168
DAY = 86_400.0
WEEK = 7 * DAY
_BIG = sys.float_info.max / 4  # internal values are clamped here: sums of finite values stay finite


def _clamp(value: float) -> float:
    if value > _BIG:
        return _BIG
    if value < -_BIG:
        return -_BIG
    return value


class SeasonalLevel:
    """Online level + seasonal-offsets model of a series (additive Holt-Winters, error form).

    Parameters
    ----------
    seasons
        ``(period_seconds, slots)`` per seasonal component; the slot of a time is
        ``floor((ts mod period) / period * slots)``. Empty: level only.
    level_alpha
        Weight of the newest residual in the level.
    season_alpha
        Weight of the newest visit of a slot in its offset (a plain mean over the first
        ``1 / season_alpha`` rows of a slot); a slot spanning several rows gives each row its share.
    cadence
        Seconds between rows (``None``: one row per slot).
    scale_alpha
        Weight of the newest absolute residual in the scale.

    Examples
    --------
    A daily sine sampled hourly is predicted almost exactly after a few days:

    >>> model = SeasonalLevel(seasons=[(86_400.0, 24)])
    >>> for h in range(24 * 10):
    ...     model.learn_one(h * 3600.0, 5 + math.sin(2 * math.pi * h / 24))
    >>> t = 24 * 10 * 3600.0 + 6 * 3600   # 06:00: the sine's peak
    >>> round(model.predict_one(t), 1), model.raw_score(t, 6.0) < 1.0, model.raw_score(t, 9.0) == RAW_CLIP
    (6.0, True, True)

    Negative values and zeros are as good as any:

    >>> flat = SeasonalLevel()
    >>> for i in range(50):
    ...     flat.learn_one(float(i), -3.0 if i % 2 else 0.0)
    >>> -2.0 < flat.predict_one(50.0) < -1.0, flat.raw_score(50.0, -1.5) < 1.5
    (True, True)
    """

    __slots__ = ("seasons", "level_alpha", "season_alpha", "scale_alpha", "level", "offsets", "visits", "scale",
                 "center", "spread", "learned", "gains", "first_ts")

    def __init__(self, seasons: Sequence[tuple[float, int]] = (), level_alpha: float = 0.1,
                 season_alpha: float = 0.1, scale_alpha: float = 0.02, cadence: float | None = None) -> None:
        self.seasons = [(float(period), max(1, int(slots))) for period, slots in seasons]
        self.gains = [season_alpha / max(1.0, period / slots / cadence) if cadence else season_alpha
                      for period, slots in self.seasons]
        self.level_alpha = level_alpha
        self.season_alpha = season_alpha
        self.scale_alpha = scale_alpha
        self.level = 0.0
        self.offsets = [[0.0] * slots for _, slots in self.seasons]
        self.visits = [[0] * slots for _, slots in self.seasons]
        self.scale = 0.0  # exponentially weighted mean absolute residual
        # slow exponentially weighted mean of the values and of their distance from it: the scale's floor is
        # relative to them, so residuals far below the series' own variation (model jitter) are not anomalies
        self.center = 0.0
        self.spread = 0.0
        self.learned = 0
        self.first_ts = 0.0

    def _slots(self, ts: float) -> list[int]:
        return [min(slots - 1, int((ts % period) / period * slots)) for period, slots in self.seasons]

    def predict_one(self, ts: float) -> float:
        """The expected value at ``ts``."""
        expected = self.level
        for table, slot in zip(self.offsets, self._slots(ts), strict=True):
            expected = _clamp(expected + table[slot])
        return expected

    def residual(self, ts: float, value: float) -> float:
        return _clamp(value - self.predict_one(ts))

    def raw_score(self, ts: float, value: float, direction: str = "both") -> float:
        """``|residual| / scale`` clipped to [0, RAW_CLIP]; ``direction`` "up"/"down" counts one side only."""
        if not self.learned:
            return 0.0
        r = self.residual(ts, value)
        if (direction == "up" and r <= 0) or (direction == "down" and r >= 0) or r == 0:
            return 0.0
        floor = 1e-9 * abs(self.center) + 0.01 * self.spread + 1e-300
        if abs(r) <= floor:
            return 0.0
        scale = max(self.scale, floor)
        return min(RAW_CLIP, abs(r) / scale)

    def learn_one(self, ts: float, value: float, weight: float = 1.0) -> None:
        """Learn ``value`` at ``ts``; ``weight`` < 1 learns it partly (a flagged row)."""
        if not self.learned:
            self.level = _clamp(value)
            self.center = _clamp(value)
            self.first_ts = ts
            self.learned = 1
            return
        r = self.residual(ts, value)
        self.level = _clamp(self.level + weight * self.level_alpha * r)
        # the residual left by the level goes to the seasons in turn, each taking its share of what is left
        # (the gains multiply, so the total stays below 1: a slot seen for the first time does not overshoot)
        # a longer season learns only once the shorter one before it has seen two whole periods, and no slot
        # takes more than half a residual (else the weekly offsets would keep the first days' misfit for weeks)
        rest = (1 - self.level_alpha) * r
        age = ts - self.first_ts
        for k, (table, visits, slot, least) in enumerate(
                zip(self.offsets, self.visits, self._slots(ts), self.gains, strict=True)):
            if k and age < 2 * self.seasons[k - 1][0]:
                break
            n = visits[slot] + 1
            visits[slot] = min(n, 1 << 30)
            gain = max(least, 1 / n) if k == 0 else min(0.5, max(least, 1 / n))
            table[slot] = _clamp(table[slot] + weight * gain * rest)
            rest *= 1 - gain
        self.scale += weight * self.scale_alpha * (min(_BIG, abs(r)) - self.scale)
        self.spread += self.scale_alpha * (min(_BIG, abs(_clamp(value - self.center))) - self.spread)
        self.center = _clamp(self.center + self.scale_alpha * _clamp(value - self.center))
        self.learned += 1


class AnomalyLikelihood:
    """Numenta-style anomaly likelihood of a stream of raw scores, in [0, 1].

    Parameters
    ----------
    short_window
        Rows whose mean raw score is judged (the "recent behaviour").
    long_window
        Rows the distribution of raw scores is weighted over (exponentially).
    grace_period
        Raw scores learned before :meth:`score_one` returns anything but 0.

    Examples
    --------
    >>> likelihood = AnomalyLikelihood(short_window=3, long_window=100, grace_period=10)
    >>> for i in range(200):
    ...     likelihood.learn_one(1.0 if i % 2 else 0.5)
    >>> likelihood.score_one(0.5), round(likelihood.score_one(12.0), 4)
    (0.0, 1.0)
    >>> constant = AnomalyLikelihood(grace_period=5)
    >>> for _ in range(20):
    ...     constant.learn_one(0.0)
    >>> constant.score_one(0.0), constant.score_one(3.0)
    (0.0, 1.0)
    """

    __slots__ = ("short_window", "long_window", "grace_period", "recent", "mean", "var", "n")

    #: A standard deviation of raw scores below this is treated as this (raw scores are in residual units).
    MIN_STD = 0.05

    def __init__(self, short_window: int = 5, long_window: int = 500, grace_period: int = 48) -> None:
        self.short_window = short_window
        self.long_window = long_window
        self.grace_period = grace_period
        self.recent: deque[float] = deque(maxlen=max(1, short_window - 1))  # the current row makes the window
        self.mean = 0.0
        self.var = 0.0
        self.n = 0

    def score_one(self, raw: float) -> float:
        """Probability that the recent rows (this raw score and the ``short_window - 1`` before) are abnormal."""
        if self.n < self.grace_period:
            return 0.0
        short = (raw + sum(self.recent)) / (len(self.recent) + 1)
        excess = short - self.mean
        if excess <= 1e-12:
            return 0.0
        std = math.sqrt(self.var)
        if std < self.MIN_STD:
            std = self.MIN_STD
        return max(0.0, min(1.0, math.erf(excess / (std * math.sqrt(2)))))

    def learn_one(self, raw: float) -> None:
        self.recent.append(raw)
        self.n += 1
        alpha = max(2 / (self.long_window + 1), 1 / self.n)  # a plain mean and variance while n is small
        delta = raw - self.mean
        self.mean += alpha * delta
        self.var = (1 - alpha) * (self.var + alpha * delta * delta)


def cadence_of(timestamps: Sequence[float]) -> float | None:
    """The median step between increasing timestamps (None with fewer than two distinct ones).

    >>> cadence_of([0.0, 60.0, 120.0, 300.0, 360.0]), cadence_of([5.0])
    (60.0, None)
    """
    steps = [b - a for a, b in zip(timestamps, timestamps[1:], strict=False) if b > a]
    return median(steps) if steps else None


def infer_seasons(timestamps: Sequence[float]) -> list[tuple[float, int]]:
    """Seasonal periods from the timestamps alone: their cadence and span.

    Daily when rows are less than a day apart and span at least two days; weekly too
    (the weekday/weekend difference, which a daily profile cannot hold) when the span is
    over a week and a day (three weeks for daily rows).

    >>> hourly = [h * 3600.0 for h in range(24 * 15)]
    >>> infer_seasons(hourly)
    [(86400.0, 24), (604800.0, 168)]
    >>> infer_seasons([i * 60.0 for i in range(9 * 1440)])
    [(86400.0, 288), (604800.0, 168)]
    >>> infer_seasons(hourly[:30]), infer_seasons(hourly[:24 * 7]), infer_seasons([d * 86400.0 for d in range(30)])
    ([], [(86400.0, 24)], [(604800.0, 7)])

    """
    cadence = cadence_of(timestamps)
    if cadence is None or len(timestamps) < 3:
        return []
    span = timestamps[-1] - timestamps[0]
    seasons: list[tuple[float, int]] = []
    if cadence < DAY and span >= 2 * DAY:
        seasons.append((DAY, min(MAX_SLOTS, max(1, round(DAY / cadence)))))
    if (cadence < DAY and span >= WEEK + DAY) or (cadence >= DAY and cadence < WEEK and span >= 3 * WEEK):
        seasons.append((WEEK, min(WEEK_SLOTS, max(1, round(WEEK / cadence)))))
    return seasons


def seasons_for(periods: Sequence[float], cadence: float) -> list[tuple[float, int]]:
    """Explicit periods (seconds) as seasons, one slot per row up to :data:`MAX_SLOTS`.

    >>> seasons_for([86400.0], 300.0), seasons_for([3600.0], 1.0)
    ([(86400.0, 288)], [(3600.0, 288)])
    """
    return [(p, min(MAX_SLOTS, max(1, round(p / cadence)))) for p in periods if p > 0]


class SeriesScorer:
    """Score then learn each row of a series: the anomaly likelihood of its seasonal residuals.

    Parameters
    ----------
    seasons, cadence
        As for :class:`SeasonalLevel` (see :func:`infer_seasons`).
    threshold
        Rows scoring at least this are *flagged*: learned at ``flagged_weight`` only.
    flagged_weight
        Fraction of the usual learning weight a flagged row gets.
    relearn_rows
        After this many consecutive flagged rows deviating mostly on one side, the level
        jumps by their median residual: the shift is the new normal (0: never). With the defaults a
        step to any new level is flagged within ``short_window`` rows and scores below
        ``threshold`` again within :attr:`RELEARN_ROWS` rows (the property tests check both).
    level_alpha
        Weight of the newest residual in the level; ``None``: 0.1, or 3 rows per
        shortest seasonal period if that is less (a faster level chases the season itself).
    warmup
        Rows the level model learns before its raw scores feed the likelihood;
        ``None``: the longest seasonal period's rows, at least ``3 / level_alpha`` (the level's settling time).

    Examples
    --------
    A noisy level of 10, a step to 30 at row 300 (flagged at once), learned as the new normal:

    >>> scorer = SeriesScorer()
    >>> values = [10 + (i * 7 % 5) * 0.2 for i in range(300)] + [30 + (i * 7 % 5) * 0.2 for i in range(300)]
    >>> scores = [scorer.process_one(i * 60.0, v) for i, v in enumerate(values)]
    >>> max(scores[100:300]) < 0.5, scores[300] > 0.999, max(scores[300 + SeriesScorer.RELEARN_ROWS:]) < 0.5
    (True, True, True)
    """

    #: Rows after a persistent level shift by which scores are below the threshold again, with the
    #: default ``relearn_rows`` and ``short_window`` (see the property tests).
    RELEARN_ROWS = 40

    __slots__ = ("model", "likelihood", "threshold", "flagged_weight", "direction", "warmup", "first_ts",
                 "relearn_rows", "held")

    def __init__(self, seasons: Sequence[tuple[float, int]] = (), *, threshold: float = 0.99,
                 flagged_weight: float = 0.25, relearn_rows: int = 12, short_window: int = 5,
                 long_window: int = 500, grace_period: int = 48, direction: str = "both", warmup: int | None = None,
                 level_alpha: float | None = None, season_alpha: float = 0.1, cadence: float | None = None) -> None:
        if level_alpha is None:
            shortest = min(((period / cadence if cadence else slots) for period, slots in seasons), default=0)
            level_alpha = min(0.1, 3 / shortest) if shortest else 0.1
        self.relearn_rows = relearn_rows
        self.held: list[tuple[float, float]] = []  # the current run of consecutive flagged rows
        self.model = SeasonalLevel(seasons, level_alpha=level_alpha, season_alpha=season_alpha, cadence=cadence)
        self.likelihood = AnomalyLikelihood(short_window, long_window, grace_period)
        self.threshold = threshold
        self.flagged_weight = flagged_weight
        self.direction = direction
        self.warmup = warmup
        self.first_ts: float | None = None

    def _warm(self, ts: float) -> bool:
        if self.warmup is not None:
            return self.model.learned >= self.warmup
        longest = max((period for period, _ in self.model.seasons), default=0.0)
        return (self.model.learned >= max(self.likelihood.short_window, 3 / self.model.level_alpha)
                and (self.first_ts is None or ts - self.first_ts >= longest))

    def score_one(self, ts: float, value: float) -> float:
        """Anomaly likelihood of ``value`` at ``ts`` from the rows learned so far (nothing is learned)."""
        if not self._warm(ts):
            return 0.0
        return self.likelihood.score_one(self.model.raw_score(ts, value, self.direction))

    def learn_one(self, ts: float, value: float, flagged: bool = False) -> None:
        if self.first_ts is None:
            self.first_ts = ts
        if self._warm(ts):
            self.likelihood.learn_one(self.model.raw_score(ts, value, self.direction))
        self.model.learn_one(ts, value, self.flagged_weight if flagged else 1.0)
        if not flagged:
            self.held.clear()
            return
        self.held.append((ts, value))
        if 0 < self.relearn_rows <= len(self.held):
            residuals = sorted(self.model.residual(t, v) for t, v in self.held)
            above = sum(r > 0 for r in residuals)
            if max(above, len(residuals) - above) >= 0.75 * len(residuals):  # a shift, not a burst of noise
                self.model.level = _clamp(self.model.level + residuals[len(residuals) // 2])
                self.likelihood.recent.clear()
            self.held.clear()

    def process_one(self, ts: float, value: float) -> float:
        """Score ``value``, then learn it (at reduced weight if the score flags it); returns the score."""
        score = self.score_one(ts, value)
        self.learn_one(ts, value, flagged=score >= self.threshold)
        return score
