"""One subject's spend baseline, kept online and shared by the spend detectors.

* a 7-day rolling daily mean over complete UTC days (``river.utils.Rolling`` of a
  ``river.stats.Mean``; silent days count as $0),
* an hour-of-week profile (168 exponentially weighted means of hourly spend),
* the running spend over the last 24 hours in 10-minute buckets, updated per event,
* the last 8 days of hourly spend, for the alert's sparkline series.

Money is integer micro-dollars. Buckets live in ``array`` objects so a snapshot of one
subject stays a few kilobytes.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime
from typing import Any

from spendwatch.detectors.snapshot import new_rolling_mean, restore_rolling_mean, rolling_mean_state

HOUR = 3600
DAY = 86_400
WEEK_HOURS = 168
#: The 24-hour running window is kept in buckets of this many seconds.
RUNNING_BUCKET = 600
RUNNING_BUCKETS = DAY // RUNNING_BUCKET
RING_HOURS = 192  # 8 days


def hour_of_week(hour_index: int) -> int:
    """Hour of the week (0 = Monday 00:00 UTC) of an absolute hour index (``ts // 3600``).

    >>> hour_of_week(int(datetime(2026, 11, 23, 0, tzinfo=UTC).timestamp()) // 3600)  # a Monday
    0
    >>> hour_of_week(int(datetime(2026, 11, 29, 23, tzinfo=UTC).timestamp()) // 3600)  # Sunday 23h
    167
    """
    # 1970-01-01 was a Thursday: hour 0 is hour 72 of its week.
    return (hour_index + 72) % WEEK_HOURS


class SpendBaseline:
    """Online spend baseline of one subject.

    Parameters
    ----------
    profile_alpha
        Weight of the newest observation of each hour-of-week slot.
    min_history_days
        Complete days of history before :attr:`daily_mean` is trusted (``has_history``).

    Examples
    --------
    >>> from datetime import timedelta
    >>> start = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
    >>> b = SpendBaseline(min_history_days=3)
    >>> for h in range(24 * 7):                          # $1 an hour for a week
    ...     b.learn_one((start + timedelta(hours=h, minutes=5)).timestamp(), 1_000_000)
    >>> b.advance((start + timedelta(days=7)).timestamp())
    >>> b.has_history, round(b.daily_mean / 1e6, 2), b.last_day / 1e6, b.running_24h / 1e6
    (True, 24.0, 24.0, 23.0)
    >>> b.learn_one((start + timedelta(days=7, minutes=1)).timestamp(), 30_000_000)
    >>> b.running_24h / 1e6, b.today / 1e6
    (53.0, 30.0)
    """

    __slots__ = (
        "profile_alpha", "min_history_days", "first_day", "day", "today", "days",
        "running", "running_24h", "running_index", "hours", "hour_index", "profile", "profile_n",
    )

    def __init__(self, profile_alpha: float = 0.3, min_history_days: int = 3) -> None:
        self.profile_alpha = profile_alpha
        self.min_history_days = min_history_days
        self.first_day: int | None = None
        self.day = 0  # current UTC day index (ts // DAY)
        self.today = 0  # micro-dollars so far in the current UTC day
        self.days = new_rolling_mean(7)  # complete days' totals: utils.Rolling(stats.Mean, window_size=7)
        self.running = array("q", bytes(8 * RUNNING_BUCKETS))
        self.running_24h = 0
        self.running_index = 0
        self.hours = array("q", bytes(8 * RING_HOURS))
        self.hour_index = 0
        self.profile = array("d", bytes(8 * WEEK_HOURS))
        self.profile_n = array("H", bytes(2 * WEEK_HOURS))

    # -- snapshots: a tuple of the slots, arrays as bytes (see spendwatch.detectors.snapshot) ------
    def __getstate__(self) -> tuple[Any, ...]:
        return (self.profile_alpha, self.min_history_days, self.first_day, self.day, self.today,
                rolling_mean_state(self.days), self.running.tobytes(), self.running_24h, self.running_index,
                self.hours.tobytes(), self.hour_index, self.profile.tobytes(), self.profile_n.tobytes())

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if state[0] is None:  # written before snapshot version 2: (None, slots) with the objects
            for name, value in state[1].items():
                setattr(self, name, value)
            return
        (self.profile_alpha, self.min_history_days, self.first_day, self.day, self.today, days, running,
         self.running_24h, self.running_index, hours, self.hour_index, profile, profile_n) = state
        self.days = restore_rolling_mean(days)
        self.running, self.hours = array("q", running), array("q", hours)
        self.profile, self.profile_n = array("d", profile), array("H", profile_n)

    # -- learning --------------------------------------------------------------------
    def advance(self, ts: float) -> None:
        """Move the clock to event time ``ts``: expire old buckets, close hours and days."""
        t = int(ts)
        if self.first_day is None:
            self.first_day = self.day = t // DAY
            self.running_index = t // RUNNING_BUCKET
            self.hour_index = t // HOUR
            return
        ri = t // RUNNING_BUCKET
        if ri > self.running_index:
            running = self.running
            if ri - self.running_index >= RUNNING_BUCKETS:
                for i in range(RUNNING_BUCKETS):
                    running[i] = 0
                self.running_24h = 0
            else:
                for i in range(self.running_index + 1, ri + 1):
                    slot = i % RUNNING_BUCKETS
                    self.running_24h -= running[slot]
                    running[slot] = 0
            self.running_index = ri
        hi = t // HOUR
        if hi > self.hour_index:
            self._close_hours(hi)
        d = t // DAY
        if d > self.day:
            self.days.update(self.today)
            for _ in range(min(d - self.day - 1, 7)):
                self.days.update(0)
            self.day = d
            self.today = 0

    def _close_hours(self, hi: int) -> None:
        alpha, profile, profile_n, hours = self.profile_alpha, self.profile, self.profile_n, self.hours
        first = max(self.hour_index, hi - WEEK_HOURS)
        for h in range(first, hi):
            spent = hours[h % RING_HOURS] if h == self.hour_index else 0
            how = hour_of_week(h)
            if profile_n[how]:
                profile[how] += alpha * (spent - profile[how])
            else:
                profile[how] = spent
            if profile_n[how] < 65535:
                profile_n[how] += 1
        for h in range(max(self.hour_index + 1, hi - RING_HOURS + 1), hi + 1):
            hours[h % RING_HOURS] = 0
        self.hour_index = hi

    def learn_one(self, ts: float, cost: int) -> None:
        """Add one request's cost (micro-dollars) at event time ``ts``."""
        t = int(ts)
        running_index = t // RUNNING_BUCKET
        # the hour and day indexes move only with the 10-minute one (all three follow the latest time seen),
        # so most records need no advance()
        if running_index > self.running_index or self.first_day is None:
            self.advance(ts)
        if not cost:
            return
        if running_index > self.running_index - RUNNING_BUCKETS:
            self.running[running_index % RUNNING_BUCKETS] += cost
            self.running_24h += cost
        hour_index = t // HOUR
        if hour_index > self.hour_index - RING_HOURS:
            self.hours[hour_index % RING_HOURS] += cost
        if t // DAY == self.day:
            self.today += cost

    # -- reading ---------------------------------------------------------------------
    @property
    def history_days(self) -> int:
        """Complete UTC days seen since the first record (at most 7 count)."""
        return 0 if self.first_day is None else self.day - self.first_day

    @property
    def has_history(self) -> bool:
        # history_days inlined: read per request
        return (0 if self.first_day is None else self.day - self.first_day) >= self.min_history_days

    @property
    def daily_mean(self) -> float:
        """Mean spend per complete UTC day over the last 7 (micro-dollars; 0 without history)."""
        # the wrapped Mean directly: Rolling forwards get() through __getattr__, slow on this per-record path
        return self.days.obj.get() if self.history_days else 0.0

    @property
    def last_day(self) -> float:
        """Spend of the last complete UTC day (micro-dollars; 0 without one)."""
        window = self.days.window  # river keeps each update's (args, kwargs)
        return float(window[-1][0][0]) if self.history_days and window else 0.0

    def recent_sum(self, ts: float, seconds: int) -> int:
        """Spend over the last ``seconds`` (rounded to 10-minute buckets, current one included)."""
        n = min(RUNNING_BUCKETS, max(1, -(-seconds // RUNNING_BUCKET)))
        ri = self.running_index
        running = self.running
        return sum(running[i % RUNNING_BUCKETS] for i in range(ri - n + 1, ri + 1))

    def expected_hour(self, hour_index: int) -> float | None:
        """The profile's expected spend for that absolute hour (None until that hour of week was seen)."""
        how = hour_of_week(hour_index)
        return self.profile[how] if self.profile_n[how] else None

    def expected_rest_of_day(self, ts: float) -> float:
        """Expected spend from ``ts`` to the end of its UTC day, from the profile (daily mean as fallback)."""
        hi = int(ts) // HOUR
        end = (int(ts) // DAY + 1) * 24
        fallback = self.daily_mean / 24
        frac = 1 - (ts - hi * HOUR) / HOUR
        total = 0.0
        for h in range(hi, end):
            expected = self.expected_hour(h)
            total += (fallback if expected is None else expected) * (frac if h == hi else 1)
        return total

    def hourly_series(self, hours: int = 24) -> list[tuple[datetime, int, float | None]]:
        """The last ``hours`` hourly buckets (current one last): (start, spend, profile expectation)."""
        out = []
        for h in range(self.hour_index - hours + 1, self.hour_index + 1):
            spent = self.hours[h % RING_HOURS] if h > self.hour_index - RING_HOURS else 0
            out.append((datetime.fromtimestamp(h * HOUR, UTC), spent, self.expected_hour(h)))
        return out
