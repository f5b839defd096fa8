"""spend_spike: the last 24 hours' spend against the 7-day rolling daily mean.

The user's rule: page when a subject's spend over the last 24 hours exceeds ``factor``
(3 by default) times its 7-day rolling daily mean, by at least ``min_excess_usd`` so a
$0.10 key cannot page. The running 24-hour sum is updated with every request, so the
page fires on the request that crosses the line, not at the end of the day. A subject
with fewer than ``baseline.min_history_days`` complete days is judged only by the
absolute guard ``absolute_usd``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd

if TYPE_CHECKING:
    from spendwatch.detectors.baseline import SpendBaseline
    from spendwatch.detectors.config import SpendSpikeConfig


class SpendSpike(Detector):
    """24-hour running spend > factor x 7-day daily mean (plus an absolute guard).

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, SpendSpikeConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {})
    >>> spike = SpendSpike(SpendSpikeConfig(), BaselineConfig(), "key", "k1")
    >>> t = datetime(2026, 11, 2, tzinfo=UTC).timestamp()
    >>> for hour in range(24 * 7):                 # a week at $4/hour: $96 a day
    ...     ctx.baseline.learn_one(t + hour * 3600, 4_000_000)
    >>> now = t + 7 * 86400
    >>> ctx.baseline.learn_one(now, 150_000_000)   # $150 at once: 24h spend $242 < 3 x $96 (the window is 144 ten-minute buckets)
    >>> spike.score_one(ctx, now)[0].abnormal
    False
    >>> ctx.baseline.learn_one(now + 60, 60_000_000)   # +$60: $302 > $288 but only $14 above the line
    >>> spike.score_one(ctx, now + 60)[0].abnormal
    False
    >>> ctx.baseline.learn_one(now + 120, 40_000_000)  # +$40: $342, $54 above the line
    >>> finding = spike.score_one(ctx, now + 120)[0]
    >>> finding.abnormal, finding.observed, finding.expected
    (True, 342.0, 96.0)
    >>> finding.summary
    'key k1 spent $342.00 in the last 24h, 3.6x its 7-day daily mean of $96.00 (page line $288.00)'
    """

    name = "spend_spike"
    config: SpendSpikeConfig

    def derive(self) -> None:
        self._cfg_min_excess = int(self.config.min_excess_usd * MICROS)
        absolute = self.config.absolute_usd
        self._cfg_absolute = None if absolute is None else int(absolute * MICROS)
        # the page line of the baseline's current day: its daily mean moves only when the day does
        self._cfg_day: tuple[int, int | None] | None = None
        self._cfg_history = False
        self._cfg_mean = self._cfg_line = 0.0
        self._cfg_expected: float | None = None

    def _judge_day(self, baseline: SpendBaseline) -> None:
        self._cfg_day = (baseline.day, baseline.first_day)
        self._cfg_history = baseline.has_history
        if self._cfg_history:
            self._cfg_mean = baseline.daily_mean
            self._cfg_line = self.config.factor * self._cfg_mean
            self._cfg_expected = self._cfg_mean / MICROS
        else:
            self._cfg_mean = self._cfg_line = 0.0
            self._cfg_expected = None

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        baseline, cfg = ctx.baseline, self.config
        running = baseline.running_24h
        absolute = cfg.absolute_usd
        day = self._cfg_day
        if day is None or day[0] != baseline.day or day[1] != baseline.first_day:
            self._judge_day(baseline)
        mean, line, expected = self._cfg_mean, self._cfg_line, self._cfg_expected
        if self._cfg_history:
            abnormal = running > line and running - line >= self._cfg_min_excess
        else:
            abnormal = self._cfg_absolute is not None and running > self._cfg_absolute
        if not abnormal and not ctx.normal_findings:
            return []
        finding = Finding(abnormal, running / MICROS, expected, window="day")
        if abnormal:
            who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
            subject = f"{ctx.scope} {who or ctx.subject}"
            if expected:
                finding.summary = (
                    f"{subject} spent {usd(running)} in the last 24h, {running / mean:.1f}x its 7-day daily mean "
                    f"of {usd(mean)} (page line {usd(line)})"
                )
            else:
                finding.summary = (
                    f"{subject} spent {usd(running)} in the last 24h, over the absolute guard of "
                    f"{usd(absolute * MICROS)} (no baseline yet)"  # type: ignore[operator]
                )
            finding.details = {"factor": cfg.factor, "history_days": baseline.history_days,
                               "line_usd": round(line / MICROS, 2)}
        return [finding]
