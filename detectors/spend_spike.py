"""spend_spike: a subject's day heading for more than ``factor`` x its 7-day daily mean.

The user's rule is "page when a key's daily spend exceeds 3x its 7-day average". Two ways to
break it, both paged (``details["trigger"]``):

``projection``
    The day is projected from the current rate, so the page comes within the hour rather
    than when the day has closed. Over the last 30, 60 and 120 minutes the subject's spend
    and its count of *new sessions* are compared with what the same hours usually bring on
    the same kind of day (weekday or weekend, from the last 7 days of hourly history). The
    rate ratio is the smaller of the spend ratio and a Poisson lower confidence bound
    (``confidence_z``) on the session-start ratio, shrunk towards 1 as if ``prior_sessions``
    more had been seen at the usual rate: evidence proportional to volume, counted
    in sessions, so a key that starts two sessions a day needs several more before it can
    page, and one big session (session_burn's business) or a runaway loop inside one
    session (runaway_loop's) cannot page alone. Requests without a session id count as
    sessions of one request. The projection is today's spend so far plus the ratio times
    the rest of the day's usual spend, or the last 24 hours' spend with the next
    :data:`HORIZON_HOURS` at the ratio, whichever is more. An hour counts as at least
    :data:`QUIET_HOUR` of the mean hour, in the ratio and the projection alike: a spike at an
    hour the key is usually idle is projected at the rate it was measured against, not at nothing.
``running``
    The spend over the last 24 hours is already over the line (the request that crosses it pages).

Either way the excess must come from more ordinary traffic: a session spending more than
:data:`BIG_SESSION` x the usual spend per session counts only that much (beyond the share such excess has
of the usual days: what is left is scaled by the usual days' kept share), and the day (the last 24
hours, or today as projected) is counted in sessions too. That count must be significantly more
than a usual day's against the key's own day-to-day spread (log scale, robust: see
:func:`day_sigma`; at least ``min_day_spread``, since a week cannot show a sparse key's spread),
and, at the usual spend per session, make the line itself. So a noisy key
needs more, a steady small key pages on a real 3x day, and a day of 3x the dollars from bigger
sessions (not more of them) is not a spend spike. One long session on a small key is not one
either (a runaway one is runaway_loop's page). Once paged, the dollars alone keep the episode
open while the spike is in the last 24 hours.

Both need the excess over the line to be at least ``min_excess_usd`` (the configurable dollar
floor, for keys spending cents) and ``min_excess_share`` of the daily mean (the floor on the
key's own scale: a day, or a projection, just over the line is within a day's variation). Yesterday, if
it was a spike itself that paged (``factor`` x the other days in dollars and in sessions), is left
out of the usual day, so a spike running over midnight does not raise its own line. The daily mean is
over the days the subject has existed: its first day counts for the share of a usual day's spend after
its first hour with traffic (a key created at 18:00 has the evening's share of a day in its mean, not a
day of little spend). A subject with fewer than ``baseline.min_history_days`` complete days is judged
only by the absolute guard ``absolute_usd``.
"""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, Any

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, usd
from spendwatch.detectors.baseline import DAY, HOUR, RING_HOURS, RUNNING_BUCKET, RUNNING_BUCKETS

if TYPE_CHECKING:
    from spendwatch.detectors.baseline import SpendBaseline
    from spendwatch.detectors.config import SpendSpikeConfig

#: Windows (seconds) the current rate is measured over; the strongest evidence counts.
WINDOWS = (1800, 3600, 7200)
#: A session spending more than this many times the usual spend per session counts only that much:
#: one long session on a small key is not "more ordinary traffic".
BIG_SESSION = 5
#: The rolling 24 hours are projected this many hours ahead.
HORIZON_HOURS = 6
#: An hour's usual spend and new sessions are taken to be at least this share of the mean hour's, in the rate
#: ratio and in the projection alike: a key that is usually idle at this hour is measured against (and
#: projected at) a rate, not against nothing.
QUIET_HOUR = 0.5
#: A session idle this long and then seen again counts as a new one.
SESSION_IDLE = 1800
#: Sessions remembered to tell a new session from a running one (the oldest go first).
MAX_SESSIONS = 4096
_BUCKETS = max(WINDOWS) // RUNNING_BUCKET  # 10-minute buckets of session starts kept for the windows


def _clear(ring: array, last: int, now: int) -> int:
    """Zero the slots of a ring indexed by absolute slot numbers, from after ``last`` to ``now``; their sum."""
    size = len(ring)
    removed = 0
    if last < 0 or now - last >= size:
        removed = sum(ring)
        for i in range(size):
            ring[i] = 0
    else:
        for i in range(last + 1, now + 1):
            removed += ring[i % size]
            ring[i % size] = 0
    return removed


def poisson_lower(n: float, z: float) -> float:
    """One-sided lower confidence bound on a Poisson mean after observing ``n`` (Wilson-Hilferty).

    >>> poisson_lower(0, 3.0), round(poisson_lower(10, 3.0), 2), round(poisson_lower(100, 3.0), 1)
    (0.0, 3.04, 72.6)
    """
    if n <= 0:
        return 0.0
    base = 1 - 1 / (9 * n) - z / (3 * math.sqrt(n))
    return n * base**3 if base > 0 else 0.0


def day_sigma(counts: list[int], weekend: list[bool]) -> float:
    """Day-to-day spread of daily counts beyond Poisson noise, on the log scale (robust: 1.4826 x MAD).

    Each day is compared with the mean of its kind (weekday or weekend); the Poisson part of the
    spread of ``log(n + 1)`` (about ``1 / (mean + 1)``) is taken out.

    >>> round(day_sigma([100, 104, 96, 101, 99, 20, 21], [False] * 5 + [True] * 2), 2)   # steady, quiet weekends
    0.0
    >>> round(day_sigma([100, 160, 60, 130, 80, 20, 21], [False] * 5 + [True] * 2), 2)   # +-40% day to day
    0.32
    >>> day_sigma([3], [False])
    0.0
    """
    if len(counts) < 3:
        return 0.0
    means = {}
    for kind in (False, True):
        of_kind = [n for n, w in zip(counts, weekend, strict=True) if w == kind]
        means[kind] = sum(of_kind) / len(of_kind) if of_kind else 0.0
    residuals = sorted(math.log((n + 1) / (means[w] + 1)) for n, w in zip(counts, weekend, strict=True))
    middle = residuals[len(residuals) // 2]
    deviations = sorted(abs(r - middle) for r in residuals)
    sigma = 1.4826 * deviations[len(deviations) // 2]
    mean = sum(counts) / len(counts)
    return math.sqrt(max(0.0, sigma**2 - 1 / (mean + 1)))


def is_weekend(hour_index: int) -> bool:
    """Saturday or Sunday (UTC) for an absolute hour index (``ts // 3600``).

    >>> is_weekend(1_762_128_000 // 3600), is_weekend((1_762_128_000 + 5 * DAY) // 3600)   # a Monday, a Saturday
    (False, True)
    """
    return (hour_index // 24 + 3) % 7 >= 5  # 1970-01-01 was a Thursday


class SpendSpike(Detector):
    """The day projected (or the last 24 hours) over factor x the 7-day daily mean, plus an absolute guard.

    Examples
    --------
    A key with about 12 sessions an hour around the clock ($0.50 each, $144 a day) for a
    week; then ten times that from 09:00 (a day of 6.6x). It pages within the hour, on the projection:

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, SpendSpikeConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {})
    >>> spike = SpendSpike(SpendSpikeConfig(), BaselineConfig(), "key", "k1")
    >>> t0 = 1_762_128_000                                  # 2025-11-03, a Monday
    >>> def feed(start, seconds, every, first):
    ...     for i, at in enumerate(range(start, start + seconds, every)):
    ...         obs = Observation("request", at, cost=500_000, session_id=f"s{first + i}")
    ...         ctx.baseline.learn_one(obs.ts, obs.cost); spike.learn_one(obs, ctx)
    ...         finding = spike.score_one(ctx, obs.ts, obs)
    ...         if finding and finding[0].abnormal:
    ...             return at, finding[0]
    >>> feed(t0, 7 * DAY + 9 * 3600, 300, 0) is None
    True
    >>> at, finding = feed(t0 + 7 * DAY + 9 * 3600, 6 * 3600, 30, 10**6)
    >>> print(f"paged after {(at - t0 - 7 * DAY - 9 * 3600) // 60} minutes:", finding.summary)
    paged after 20 minutes: key k1 is on course for $527.77 today, 3.7x its 7-day daily mean of $144.00 (41 new sessions in the last 30 min, usually ~4)
    """

    name = "spend_spike"
    config: SpendSpikeConfig

    def __init__(self, config: SpendSpikeConfig, baseline_config: Any, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.hourly_starts = array("i", bytes(4 * RING_HOURS))  # new sessions per hour, the last 8 days
        self.recent_starts = array("i", bytes(4 * _BUCKETS))  # new sessions per 10-minute bucket, the last 2 hours
        #: micro-dollars spent by sessions beyond the big-session cap, per 10-minute bucket of the last 24 hours
        self.trimmed = array("q", bytes(8 * RUNNING_BUCKETS))
        self.trimmed_24h = 0  # their sum
        self.trimmed_hours = array("q", bytes(8 * RING_HOURS))  # the same excess per hour, the last 8 days
        self.trimmed_today = 0
        self.hour = -1  # hour index of the newest hourly slot
        self.bucket = -1  # index of the newest 10-minute bucket
        self.sessions: dict[str, list[float]] = {}  # session -> [last seen, micro-dollars] (recent sessions only)
        self.paged_at = -math.inf  # when the last abnormal finding was

    _ARRAYS = (("hourly_starts", "i", RING_HOURS), ("recent_starts", "i", _BUCKETS), ("trimmed", "q", RUNNING_BUCKETS),
               ("trimmed_hours", "q", RING_HOURS))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for name, _, _ in self._ARRAYS:
            state[name] = state[name].tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "trimmed" not in state:  # a snapshot from before the session counts: start them now
            state = {**state, "hour": -1, "bucket": -1, "sessions": {}, "trimmed_today": 0, "trimmed_24h": 0,
                     **{name: bytes(array(code).itemsize * n) for name, code, n in self._ARRAYS}}
        if "paged_at" not in state:
            state = {**state, "paged_at": -math.inf}
        if "trimmed_hours" not in state:  # from before the usual big-session share: it is learnt from now on
            state = {**state, "trimmed_hours": bytes(8 * RING_HOURS)}
        super().__setstate__(state)
        for name, code, _ in self._ARRAYS:
            setattr(self, name, array(code, state[name]))

    def derive(self) -> None:
        cfg = self.config
        self._cfg_min_excess = int(cfg.min_excess_usd * MICROS)
        self._cfg_floor = float(self._cfg_min_excess)  # the dollar floor for this subject (see _refresh)
        self._cfg_absolute = None if cfg.absolute_usd is None else int(cfg.absolute_usd * MICROS)
        self._cfg_key: tuple[int, int | None] | None = None  # (day, first day) the cache is for
        self._cfg_history = False
        self._cfg_mean = self._cfg_line = 0.0
        self._cfg_expected: float | None = None
        self._cfg_spend = [0.0] * 24  # usual spend per hour of day on today's kind of day (micro-dollars)
        self._cfg_starts = [0.0] * 24  # usual new sessions per hour of day on today's kind of day
        self._cfg_rest = [0.0] * 25  # usual spend (QUIET_HOUR at least) from the start of hour h to the day's end
        self._cfg_spend_at = [0.0] * 24  # the usual spend per hour of day, at least QUIET_HOUR x the mean hour's
        self._cfg_starts_at = [0.0] * 24  # the usual new sessions per hour of day, likewise
        self._cfg_dispersion = 1.0  # variance / mean of the hourly session starts
        self._cfg_day_sessions = 0.0  # mean new sessions per day over the daily mean's days
        self._cfg_day_sigma = 0.0  # day-to-day log-scale spread of the daily session count beyond Poisson
        self._cfg_big_session = float("inf")  # a session spending more than this is not ordinary traffic
        self._cfg_kept = 1.0  # the share of a usual day's spend left after the big-session cap
        self._cfg_bound: tuple[int, float] | None = None  # (bucket, upper bound of the rate ratio): see _may_cross

    # -- learning ------------------------------------------------------------------------
    def _advance(self, ts: float) -> None:
        hour = int(ts) // HOUR
        if hour > self.hour:
            _clear(self.hourly_starts, self.hour, hour)
            _clear(self.trimmed_hours, self.hour, hour)
            if self.hour >= 0 and (hour * HOUR) // DAY != (self.hour * HOUR) // DAY:
                self.trimmed_today = 0
            self.hour = hour
            idle = ts - SESSION_IDLE
            if len(self.sessions) > 64:
                self.sessions = {s: v for s, v in self.sessions.items() if v[0] >= idle}
        bucket = int(ts) // RUNNING_BUCKET
        if bucket > self.bucket:
            _clear(self.recent_starts, self.bucket, bucket)
            self.trimmed_24h -= _clear(self.trimmed, self.bucket, bucket)
            self.bucket = bucket

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        ts = obs.ts
        if int(ts) // RUNNING_BUCKET > self.bucket:
            self._advance(ts)
        session = obs.session_id or obs.record_id or f"@{ts}"
        entry = self.sessions.get(session)
        if entry is not None and ts - entry[0] < SESSION_IDLE:
            entry[0] = ts
            before = entry[1]
            entry[1] = before + obs.cost
            cap = self._cfg_big_session
            if before + obs.cost > cap and int(ts) // RUNNING_BUCKET > self.bucket - RUNNING_BUCKETS:
                excess = int(min(obs.cost, before + obs.cost - cap))
                self.trimmed[(int(ts) // RUNNING_BUCKET) % RUNNING_BUCKETS] += excess
                self.trimmed_24h += excess
                if int(ts) // DAY == self.hour * HOUR // DAY:
                    self.trimmed_today += excess
                if int(ts) // HOUR > self.hour - RING_HOURS:
                    self.trimmed_hours[(int(ts) // HOUR) % RING_HOURS] += excess
            return
        self.sessions[session] = [ts, obs.cost]
        self._cfg_bound = None  # a new session: the ratio may rise
        if len(self.sessions) > MAX_SESSIONS:
            del self.sessions[next(iter(self.sessions))]
        if int(ts) // HOUR > self.hour - RING_HOURS:
            self.hourly_starts[(int(ts) // HOUR) % RING_HOURS] += 1
        if int(ts) // RUNNING_BUCKET > self.bucket - _BUCKETS:
            self.recent_starts[(int(ts) // RUNNING_BUCKET) % _BUCKETS] += 1

    def _ordinary(self, spent: float, trimmed: float) -> float:
        """Spend from ordinary traffic: the big-session excess left out, but only beyond its usual share
        (what is left is scaled by the usual days' kept share, up to the spend itself)."""
        return min(spent, (spent - trimmed) / self._cfg_kept)

    def _trimmed_since(self, buckets: int) -> int:
        """Big-session excess over the last ``buckets`` 10-minute buckets (the current one included)."""
        return sum(self.trimmed[b % RUNNING_BUCKETS] for b in range(self.bucket - buckets + 1, self.bucket + 1))

    # -- the usual day ---------------------------------------------------------------------
    def _refresh(self, baseline: SpendBaseline, now: float) -> None:
        """Recompute the cached line and hour-of-day expectations (once a day: they read complete days only)."""
        self._cfg_key = (baseline.day, baseline.first_day)
        self._cfg_bound = None
        self._cfg_history = baseline.has_history
        if not self._cfg_history:
            self._cfg_mean = self._cfg_line = 0.0
            self._cfg_expected = None
            return
        # the same hour of the same kind of day (weekday / weekend) over the last 7 complete days
        today_first = baseline.day * 24
        weekend = is_weekend(today_first)
        oldest = max(baseline.hour_index - RING_HOURS, self.hour - RING_HOURS)
        days = [today_first - 24 * d for d in range(1, min(7, baseline.history_days) + 1)]
        days = [first for first in days if first > oldest]
        hours, starts_ring = baseline.hours, self.hourly_starts
        spent = [sum(hours[(first + h) % RING_HOURS] for h in range(24)) for first in days]
        counts = [sum(starts_ring[(first + h) % RING_HOURS] for h in range(24)) for first in days]  # sessions a day
        # the days the subject has existed: its first day counts for the share of a usual day's spend that falls
        # after its first hour with traffic (a key created at 18:00 has the evening's share of a day in its
        # mean, not a whole day of little spend; a key first seen at 07:00 that is idle until 07:00, a whole day)
        since = [0] * len(days)
        existed = [1.0] * len(days)
        if days and baseline.first_day is not None and days[-1] == baseline.first_day * 24:
            first = days[-1]
            since[-1] = start = next((h for h in range(24)
                                      if hours[(first + h) % RING_HOURS] or starts_ring[(first + h) % RING_HOURS]), 0)
            other_days_spent = sum(spent[:-1])
            before = sum(hours[(d + h) % RING_HOURS] for d in days[:-1] for h in range(start))
            existed[-1] = max(0.0, 1 - before / other_days_spent) if other_days_spent > 0 else 1.0  # (no usual day to judge by)
        self._cfg_mean = sum(spent) / sum(existed)
        whole = [h == 0 for h in since]  # complete days: the day-to-day spread is measured on these
        if len(days) >= 3 and self.paged_at >= (baseline.day - 1) * DAY:
            # yesterday, if it was a spike itself that paged (factor x the other days' mean in dollars and in
            # sessions), is not a usual day: a spike running over midnight would otherwise raise its own line
            other_days = sum(existed[1:])
            others_spent, others_started = sum(spent[1:]) / other_days, sum(counts[1:]) / other_days
            prior = self.config.prior_sessions
            if (spent[0] > self.config.factor * others_spent
                    and counts[0] + prior > self.config.factor * (others_started + prior)):
                self._cfg_mean, days, spent, counts, since, existed, whole = (
                    others_spent, days[1:], spent[1:], counts[1:], since[1:], existed[1:], whole[1:])
        self._cfg_line = self.config.factor * self._cfg_mean
        self._cfg_expected = self._cfg_mean / MICROS
        self._cfg_floor = max(float(self._cfg_min_excess), self.config.min_excess_share * self._cfg_mean)
        same = [i for i, first in enumerate(days) if is_weekend(first) == weekend] or list(range(len(days)))
        for h in range(24):
            # each hour over the days the subject existed at that hour
            seen = [days[i] for i in same if h >= since[i]]
            n = len(seen)
            self._cfg_spend[h] = sum(hours[(first + h) % RING_HOURS] for first in seen) / n if n else 0.0
            self._cfg_starts[h] = sum(starts_ring[(first + h) % RING_HOURS] for first in seen) / n if n else 0.0
        # the projection's tables: an hour at least QUIET_HOUR x the mean hour, as the rate ratio measures it
        quiet_spend, quiet_starts = QUIET_HOUR * self._cfg_mean / 24, QUIET_HOUR * sum(self._cfg_starts) / 24
        rest = projected = 0.0
        for h in range(23, -1, -1):
            rest += self._cfg_spend[h]
            self._cfg_spend_at[h] = max(self._cfg_spend[h], quiet_spend)
            self._cfg_starts_at[h] = max(self._cfg_starts[h], quiet_starts)
            projected += self._cfg_spend_at[h]
            self._cfg_rest[h] = projected
        self._cfg_rest[24] = 0.0
        # how much more than Poisson the hourly session starts vary around that expectation (at least 1)
        squares = total = 0.0
        for i in same:
            first = days[i]
            for h in range(since[i], 24):
                usual = self._cfg_starts[h]
                squares += (starts_ring[(first + h) % RING_HOURS] - usual) ** 2
                total += usual
        self._cfg_dispersion = max(1.0, squares / total) if total else 1.0
        sessions = sum(self._cfg_starts)
        self._cfg_big_session = BIG_SESSION * rest / sessions if sessions else float("inf")
        # how much of the usual days' spend the cap left: a key whose big sessions are a third of its usual
        # spend has a third of a spike day's spend trimmed too, and its trimmed day is compared like for like
        trimmed = sum(self.trimmed_hours[(first + h) % RING_HOURS] for first in days for h in range(24))
        usual_spent = sum(spent)
        self._cfg_kept = max(0.1, 1 - trimmed / usual_spent) if usual_spent > 0 else 1.0
        # sessions a day over the same days as the daily mean, and how much more than Poisson they vary
        # from day to day (log scale, median absolute deviation: an incident day in the week barely moves it)
        self._cfg_day_sessions = sum(counts) / sum(existed) if counts else 0.0
        # (at least min_day_spread: seven days cannot show a sparse key's spread, its Poisson noise hides it)
        complete = [(n, is_weekend(first)) for n, first, w in zip(counts, days, whole, strict=True) if w]
        self._cfg_day_sigma = max(self.config.min_day_spread,
                                  day_sigma([n for n, _ in complete], [w for _, w in complete]))

    def _usual(self, table: list[float], now: float, seconds: int) -> float:
        """The usual amount over the ``seconds`` before ``now`` from an hour-of-day table."""
        total, t, end = 0.0, now - seconds, now
        while t < end:
            boundary = min(end, (int(t) // HOUR + 1) * HOUR)
            total += table[int(t) // HOUR % 24] * (boundary - t) / HOUR
            t = boundary
        return total

    def _session_ratio(self, started: float, usual: float, z: float) -> float:
        """Lower confidence bound on started / usual: quasi-Poisson (the key's own dispersion), shrunk by the prior."""
        prior, phi = self.config.prior_sessions, self._cfg_dispersion
        return poisson_lower((started + prior) / phi, z) * phi / max(usual + prior, 1e-9)

    def _ratio(self, baseline: SpendBaseline, now: float) -> tuple[float, int, int, float]:
        """(rate ratio, window seconds, new sessions in it, usual new sessions) of the strongest window."""
        z = self.config.confidence_z
        mean_hour = self._cfg_mean / 24
        sessions_hour = sum(self._cfg_starts) / 24
        best = (0.0, WINDOWS[0], 0, 0.0)
        bound = 0.0
        elapsed = now - (int(now) // RUNNING_BUCKET) * RUNNING_BUCKET
        for seconds in WINDOWS:
            n_buckets = seconds // RUNNING_BUCKET
            # the window is its full buckets plus the current, partial one
            span = (n_buckets - 1) * RUNNING_BUCKET + elapsed
            spent = self._ordinary(baseline.recent_sum(now, seconds), self._trimmed_since(n_buckets))
            usual_spend = max(self._usual(self._cfg_spend, now, int(span)), QUIET_HOUR * mean_hour * span / HOUR)
            started = sum(self.recent_starts[b % _BUCKETS] for b in range(self.bucket - n_buckets + 1, self.bucket + 1))
            usual_starts = max(self._usual(self._cfg_starts, now, int(span)), QUIET_HOUR * sessions_hour * span / HOUR,
                               1e-9)
            sessions = self._session_ratio(started, usual_starts, z)
            bound = max(bound, sessions)
            ratio = min(max(0.0, spent) / usual_spend if usual_spend > 0 else 0.0, sessions)
            if ratio > best[0]:
                best = (ratio, seconds, started, usual_starts)
        self._cfg_bound = (self.bucket, bound)
        return best

    def _may_cross(self, baseline: SpendBaseline, now: float, running: float) -> bool:
        """Whether the projection could cross the line: a cheap test on most records.

        Between two new sessions the session ratio of every window only falls (its usual count
        grows with the time elapsed), so the largest one computed since (in this 10-minute bucket)
        bounds the rate ratio; the exact ratio is needed only when the day projected at that bound
        crosses the line."""
        cached = self._cfg_bound
        if cached is None or cached[0] != self.bucket:
            # no window holds more sessions than the last two hours: even against no usual sessions at all
            # (the prior alone), can their bound exceed 1?
            started = sum(self.recent_starts)
            return self._session_ratio(started, 0.0, self.config.confidence_z) > 1
        bound = cached[1]
        if bound <= 1:
            return False
        projected = self._project(baseline, now, self._ordinary(baseline.today, self.trimmed_today), running, bound)
        return projected > self._cfg_line and projected - self._cfg_line >= self._cfg_floor

    def _project(self, baseline: SpendBaseline, now: float, today: float, running: float, ratio: float) -> float:
        """Today's spend at ``ratio`` x the usual rate until midnight, or the last 24 hours' after
        :data:`HORIZON_HOURS` more at that ratio, whichever is more (a spike that starts late in the
        day is seen before the next one)."""
        hour = int(now) // HOUR
        into = (now - hour * HOUR) / HOUR
        rest = self._cfg_rest[hour % 24 + 1] + self._cfg_spend_at[hour % 24] * (1 - into)
        ahead = leaving = 0.0
        hours = baseline.hours
        for k in range(HORIZON_HOURS + 1):
            share = (1 - into) if k == 0 else into if k == HORIZON_HOURS else 1.0
            ahead += self._cfg_spend_at[(hour + k) % 24] * share
            gone = hour - 24 + k  # the hours that leave the 24-hour window meanwhile
            if gone > baseline.hour_index - RING_HOURS:
                leaving += hours[gone % RING_HOURS] * share
        return max(today + ratio * rest, running - leaving + ratio * ahead)

    def _project_sessions(self, now: float, ratio: float) -> float:
        """New sessions today so far plus ``ratio`` x the usual rest of the day, or the last 24 hours'
        with the next :data:`HORIZON_HOURS` at that ratio (as :meth:`_project` does for the dollars)."""
        hour = int(now) // HOUR
        into = (now - hour * HOUR) / HOUR
        starts, usual = self.hourly_starts, self._cfg_starts_at
        today = sum(starts[h % RING_HOURS] for h in range(hour - hour % 24, hour + 1))
        rest = usual[hour % 24] * (1 - into) + sum(usual[h] for h in range(hour % 24 + 1, 24))
        day = sum(starts[h % RING_HOURS] for h in range(hour - 23, hour + 1))
        ahead = leaving = 0.0
        for k in range(HORIZON_HOURS + 1):
            share = (1 - into) if k == 0 else into if k == HORIZON_HOURS else 1.0
            ahead += usual[(hour + k) % 24] * share
            leaving += starts[(hour - 24 + k) % RING_HOURS] * share if k else 0.0
        return max(today + ratio * rest, day - leaving + ratio * ahead)

    def _day_sessions(self, started: float | None = None) -> float:
        """A day's new sessions (default: the last 24 hours') in dollars of the mean day, or 0 if not
        significantly more than a usual day's.

        The count over the mean day's, shrunk as if ``prior_sessions`` more had been seen at the usual
        rate, times the daily mean: the day as more ordinary traffic would make it. It must also be
        significant against the key's own days: ``log(count / usual)`` over ``confidence_z`` standard
        deviations of a day's log count (the key's day-to-day spread, log scale, plus Poisson noise),
        so a busy or erratic key needs more than a steady one."""
        usual = self._cfg_day_sessions
        if started is None:
            started = sum(self.hourly_starts[h % RING_HOURS] for h in range(self.hour - 23, self.hour + 1))
        spread = math.sqrt(self._cfg_day_sigma**2 + 1 / (usual + 1))
        if math.log((started + 1) / (usual + 1)) <= self.config.confidence_z * spread:
            return 0.0
        return (started + self.config.prior_sessions) / max(usual + self.config.prior_sessions, 1e-9) * self._cfg_mean

    # -- scoring -------------------------------------------------------------------------
    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        baseline, cfg = ctx.baseline, self.config
        if obs is None:
            self._advance(now)
        key = self._cfg_key
        if key is None or key[0] != baseline.day or key[1] != baseline.first_day:
            self._refresh(baseline, now)
        running = baseline.running_24h
        mean, line, expected = self._cfg_mean, self._cfg_line, self._cfg_expected
        trigger = ""
        projected = None
        evidence: tuple[float, int, int, float] | None = None
        if self._cfg_history:
            # only ordinary traffic counts: what sessions spent beyond the big-session cap is left out
            running_trimmed = self._ordinary(running, self.trimmed_24h)
            # and counted in sessions at the usual spend per session: more ordinary traffic, significantly
            if running_trimmed > line and running_trimmed - line >= self._cfg_floor:
                # (once paged, the dollars alone keep the episode open while the spike is in the 24 hours)
                ordinary = running_trimmed if now - self.paged_at < DAY else min(running_trimmed,
                                                                                  self._day_sessions())
                if ordinary > line and ordinary - line >= self._cfg_floor:
                    trigger = "running"
            elif baseline.today > 0 and mean > 0 and self._may_cross(baseline, now, running_trimmed):
                evidence = self._ratio(baseline, now)
                if evidence[0] > 1:
                    projected = self._project(baseline, now, self._ordinary(baseline.today, self.trimmed_today),
                                              running_trimmed, evidence[0])
                    if projected > line and projected - line >= self._cfg_floor:
                        # the day's sessions so projected must make the line too, against the day-to-day spread
                        sessions_day = projected if now - self.paged_at < DAY else (
                            self._day_sessions(self._project_sessions(now, evidence[0])))
                        if sessions_day > line and sessions_day - line >= self._cfg_floor:
                            trigger = "projection"
        elif self._cfg_absolute is not None and running > self._cfg_absolute:
            trigger = "absolute"
        if trigger:
            self.paged_at = now
        if not trigger and not ctx.normal_findings:
            return []
        observed = running if trigger != "projection" else projected
        finding = Finding(bool(trigger), (observed or 0) / MICROS, expected, window="day")
        if trigger:
            who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
            subject = f"{ctx.scope} {who or ctx.subject}"
            if trigger == "projection" and evidence is not None:
                _, seconds, started, usual = evidence
                finding.summary = (
                    f"{subject} is on course for {usd(projected or 0)} today, {(projected or 0) / mean:.1f}x its "
                    f"7-day daily mean of {usd(mean)} ({started} new sessions in the last {seconds // 60} min, "
                    f"usually ~{usual:.0f})"
                )
            elif trigger == "running":
                finding.summary = (
                    f"{subject} spent {usd(running)} in the last 24h, {running / mean:.1f}x its 7-day daily mean "
                    f"of {usd(mean)} (page line {usd(line)})"
                )
            else:
                finding.summary = (
                    f"{subject} spent {usd(running)} in the last 24h, over the absolute guard of "
                    f"{usd(cfg.absolute_usd * MICROS)} (no baseline yet)"  # type: ignore[operator]
                )
            finding.details = {"trigger": trigger, "factor": cfg.factor, "history_days": baseline.history_days,
                               "line_usd": round(line / MICROS, 2), "spent_24h_usd": round(running / MICROS, 2),
                               "projected_day_usd": None if projected is None else round(projected / MICROS, 2)}
        return [finding]
