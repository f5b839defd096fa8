"""budget_pace: spend-to-date and forecast against quarterly and monthly budgets.

Budgets live in YAML (``detectors.budget_pace.budgets``), per team (default), key,
user or org; the engine only creates this detector for subjects that have one. Periods
are calendar quarters and months in UTC. Three conditions, each its own episode:

* ``quarter:<2026Q4>:early`` -- spend-to-date crossed ``early_fraction`` (60%) of the
  quarterly budget before week ``early_before_week`` (6) of the quarter. Checked on every
  request, so it pages on the request that crosses; it lasts until the quarter ends.
* ``quarter:<2026Q4>:forecast`` and ``month:<2026-11>:forecast`` -- spend-to-date plus
  the subject's pace for the time left overruns the budget (checked each tick, from
  ``forecast_min_elapsed_days`` into the period and once the subject has
  ``min_history_days`` of spend; immediately once the budget is already exceeded).
  Resolves when the forecast comes back under.

The pace is the spend of the last 7 days (168 hours, sliding, the current hour included;
the days seen so far while the subject is younger than a week): a whole week, so weekdays
and weekends weigh as they will, and a single heavy day counts for a seventh of it -- not
as the pace. The days left are whole weeks at that pace plus the last partial week shaped
by the subject's hour-of-week profile (a month ending on a weekend is not charged five
weekdays' spend).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd
from spendwatch.detectors.baseline import HOUR, RING_HOURS, WEEK_HOURS, SpendBaseline, hour_of_week

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, Budget, BudgetPaceConfig, DetectorSettings

DAY = 86_400
WEEK = 7 * DAY


def quarter_bounds(ts: float) -> tuple[str, float, float]:
    """(label, start, end) of the calendar quarter (UTC) containing ``ts``.

    >>> quarter_bounds(datetime(2026, 11, 23, tzinfo=UTC).timestamp())[0]
    '2026Q4'
    """
    d = datetime.fromtimestamp(ts, UTC)
    q = (d.month - 1) // 3
    start = datetime(d.year, 3 * q + 1, 1, tzinfo=UTC)
    end = datetime(d.year + (q == 3), (3 * q + 3) % 12 + 1, 1, tzinfo=UTC)
    return f"{d.year}Q{q + 1}", start.timestamp(), end.timestamp()


def month_bounds(ts: float) -> tuple[str, float, float]:
    """(label, start, end) of the calendar month (UTC) containing ``ts``.

    >>> month_bounds(datetime(2026, 12, 31, 23, tzinfo=UTC).timestamp())[0]
    '2026-12'
    """
    d = datetime.fromtimestamp(ts, UTC)
    start = datetime(d.year, d.month, 1, tzinfo=UTC)
    end = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=UTC)
    return f"{d.year}-{d.month:02d}", start.timestamp(), end.timestamp()


class _Period:
    __slots__ = ("label", "start", "end", "spent")

    def __init__(self, bounds: tuple[str, float, float]) -> None:
        self.label, self.start, self.end = bounds
        self.spent = 0


class BudgetPace(Detector):
    """Quarterly and monthly budget pace for one budgeted subject.

    Examples
    --------
    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, BudgetPaceConfig
    >>> config = BudgetPaceConfig(budgets=[{"subject": "ml", "quarterly_usd": 10000, "owner": "ana"}])
    >>> ctx = Context("team", "ml", SpendBaseline(), Contributors(), {"team": "ml"})
    >>> pace = BudgetPace(config, BaselineConfig(), "team", "ml")
    >>> t = datetime(2026, 10, 20, tzinfo=UTC).timestamp()          # week 3 of 2026Q4
    >>> def spend(ts, dollars):
    ...     obs = Observation("request", ts, cost=int(dollars * 1e6), model="gpt-5")
    ...     ctx.baseline.learn_one(ts, obs.cost); pace.learn_one(obs, ctx)
    ...     return pace.score_one(ctx, ts, obs)
    >>> spend(t, 5_900)
    []
    >>> [finding] = spend(t + 60, 200)                                # crosses $6,000 = 60%
    >>> finding.episode, finding.labels["owner"]
    ('quarter:2026Q4:early', 'ana')
    >>> finding.summary
    'team ml has spent $6,100.00 of its $10,000.00 2026Q4 budget (61%) in week 3 of 13'
    """

    name = "budget_pace"
    kinds = frozenset({"request"})
    idle_tick = True  # the forecast may start to page as the period goes by, spend or not
    config: BudgetPaceConfig

    def __init__(self, config: BudgetPaceConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        self.scope, self.subject = scope, subject
        super().__init__(config, baseline_config, scope, subject)
        self.quarter: _Period | None = None
        self.month: _Period | None = None
        self.early_crossed: str | None = None  # label of the quarter whose early line was crossed in time

    @classmethod
    def applies_to(cls, config: DetectorSettings, scope: str, subject: str) -> bool:
        return any(b.scope == scope and b.subject == subject for b in config.budgets)  # type: ignore[attr-defined]

    def derive(self) -> None:
        budget: Budget = next(b for b in self.config.budgets if (b.scope, b.subject) == (self.scope, self.subject))
        self._cfg_budget = budget
        self._cfg_quarterly = None if budget.quarterly_usd is None else int(budget.quarterly_usd * MICROS)
        self._cfg_monthly = None if budget.monthly_usd is None else int(budget.monthly_usd * MICROS)
        self._cfg_early = None if self._cfg_quarterly is None else self.config.early_fraction * self._cfg_quarterly

    def _roll(self, ts: float) -> None:
        if self.quarter is None or ts >= self.quarter.end:
            self.quarter = _Period(quarter_bounds(ts))
        if self.month is None or ts >= self.month.end:
            self.month = _Period(month_bounds(ts))

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        self._roll(obs.ts)
        if obs.ts >= self.quarter.start:  # type: ignore[union-attr]
            self.quarter.spent += obs.cost  # type: ignore[union-attr]
        if obs.ts >= self.month.start:  # type: ignore[union-attr]
            self.month.spent += obs.cost  # type: ignore[union-attr]

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        self._roll(now)
        findings = []
        q, m = self.quarter, self.month
        if self._cfg_early is not None and q.spent >= self._cfg_early:  # type: ignore[union-attr]
            findings.append(self._early(ctx, q, now))  # type: ignore[arg-type]
        if obs is None:
            if self._cfg_quarterly is not None:
                findings.append(self._forecast(ctx, q, self._cfg_quarterly, "quarter", now))  # type: ignore[arg-type]
            if self._cfg_monthly is not None:
                findings.append(self._forecast(ctx, m, self._cfg_monthly, "month", now))  # type: ignore[arg-type]
        return [f for f in findings if f is not None]

    @staticmethod
    def _week(period: _Period, ts: float) -> int:
        return int((ts - period.start) // (7 * DAY)) + 1

    def _early(self, ctx: Context, q: _Period, now: float) -> Finding | None:
        cfg, budget = self.config, self._cfg_quarterly
        if self.early_crossed != q.label:
            if self._week(q, now) >= cfg.early_before_week:
                return None  # crossed late: that is the forecast's business
            self.early_crossed = q.label
        weeks = round((q.end - q.start) / (7 * DAY))
        return Finding(
            abnormal=True, observed=q.spent / MICROS, expected=self._cfg_early / MICROS,  # type: ignore[operator]
            episode=f"quarter:{q.label}:early", window="day", root_cause_kinds=("model", "tag"),
            labels=self._labels(),
            summary=(f"{ctx.scope} {ctx.subject} has spent {usd(q.spent)} of its {usd(budget)} {q.label} budget "  # type: ignore[arg-type]
                     f"({q.spent / budget:.0%}) in week {self._week(q, now)} of {weeks}"),  # type: ignore[operator]
            details={"budget_usd": budget / MICROS, "fraction": round(q.spent / budget, 4),  # type: ignore[operator]
                     "early_fraction": cfg.early_fraction, "period": q.label},
        )

    def _forecast(self, ctx: Context, period: _Period, budget: int, kind: str, now: float) -> Finding:
        days_left = max(0.0, (period.end - now) / DAY)
        elapsed = (now - period.start) / DAY
        baseline = ctx.baseline
        week, rest = weekly_pace(baseline, now), 0.0
        if week is not None:
            rest = week * rest_of_period_weeks(baseline, now, period.end)
        forecast = period.spent + rest
        exceeded = period.spent > budget
        may_page = exceeded or (week is not None and elapsed >= self.config.forecast_min_elapsed_days)
        abnormal = may_page and forecast > budget
        finding = Finding(abnormal=abnormal, observed=forecast / MICROS, expected=budget / MICROS,
                          episode=f"{kind}:{period.label}:forecast", window="day", root_cause_kinds=("model", "tag"))
        if abnormal:
            rate = (week or 0.0) / 7
            finding.severity = "error" if exceeded else None
            finding.labels = self._labels()
            state = f"is already over by {usd(period.spent - budget)}" if exceeded else (
                f"is on pace to end at {usd(forecast)} ({forecast / budget:.0%})")
            finding.summary = (f"{ctx.scope} {ctx.subject} {state} against its {usd(budget)} {period.label} budget: "
                               f"{usd(period.spent)} spent, {usd(rate)}/day over the last 7 days, "
                               f"{days_left:.0f} days left")
            finding.details = {"budget_usd": budget / MICROS, "spent_usd": round(period.spent / MICROS, 2),
                               "daily_rate_usd": round(rate / MICROS, 2), "days_left": round(days_left, 2),
                               "rest_of_period_usd": round(rest / MICROS, 2), "period": period.label}
        return finding

    def _labels(self) -> dict[str, str]:
        owner = self._cfg_budget.owner
        return {"owner": owner} if owner else {}


def weekly_pace(baseline: SpendBaseline, now: float) -> float | None:
    """Spend per week at the subject's recent pace (micro-dollars): its last 168 hours, the current one included.

    A subject younger than a week is scaled up from the hours it has been seen (counted from the
    start of its first UTC day); ``None`` before ``min_history_days`` complete days.

    >>> b = SpendBaseline(min_history_days=1)
    >>> for h in range(24 * 10):                          # $1 an hour, then $8 for one hour
    ...     b.learn_one(h * 3600.0 + 60, 8_000_000 if h == 200 else 1_000_000)
    >>> weekly_pace(b, 24 * 10 * 3600.0 - 1) / 1e6     # the heavy hour is one of 168
    175.0
    """
    # complete days counted to now, not to the last request: an idle tick must be able to page
    if baseline.first_day is None or int(now) // DAY - baseline.first_day < baseline.min_history_days:
        return None
    hi, hours = baseline.hour_index, baseline.hours
    total = sum(hours[h % RING_HOURS] for h in range(hi - WEEK_HOURS + 1, hi + 1))
    seen = (now - baseline.first_day * DAY) / WEEK
    return total / min(1.0, max(seen, 1 / 7))


def rest_of_period_weeks(baseline: SpendBaseline, now: float, end: float) -> float:
    """Weeks of spend left until ``end``: whole weeks, plus the last part of a week weighted by the subject's
    hour-of-week profile once every hour of the week has been seen (else by its length).

    >>> b = SpendBaseline()
    >>> rest_of_period_weeks(b, 0.0, 10 * 86_400.0)      # no profile yet: 10 days = 1.43 weeks
    1.428571...
    """
    left = max(0.0, end - now)
    weeks, part = divmod(left, WEEK)
    profile = baseline.profile
    total = sum(profile) if all(baseline.profile_n) else 0.0
    if part <= 0 or total <= 0:
        return weeks + part / WEEK
    start = int(now) // HOUR
    first = 1 - (now - start * HOUR) / HOUR  # the part of the current hour still ahead
    hours = part / HOUR
    shaped = 0.0
    h = start
    while hours > 0:
        share = min(hours, first if h == start else 1.0)
        shaped += profile[hour_of_week(h)] * share
        hours -= share
        h += 1
    return weeks + shaped / total
