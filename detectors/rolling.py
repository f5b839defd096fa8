"""Two small building blocks for the ratio detectors (model mix, cache hits, efficiency, errors).

:class:`BucketWindow` keeps named sums over the last few minutes or hours in time buckets;
:class:`DecayedSums` is the long-run baseline those buckets fold into once they leave the
window, exponentially decayed by event time (a half-life, so a lasting change becomes the
new normal). Both hold only plain dicts of floats, so detector snapshots stay small.

>>> window, baseline = BucketWindow(600, 60), DecayedSums(3600)
>>> window.add(0, {"n": 1, "failed": 1})
>>> window.add(30, {"n": 1})
>>> window.totals
{'n': 2.0, 'failed': 1.0}
>>> for index, sums in window.expire(700):      # ten minutes later both have left the window
...     baseline.fold(index * 60, sums)
>>> window.totals, baseline.get("n")
({}, 2.0)
>>> baseline.fold(3600, {"n": 2})                # an hour later the old 2 weigh half
>>> baseline.get("n")
3.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


class BucketWindow:
    """Named sums over the last ``window_s`` seconds, in buckets of ``bucket_s`` seconds."""

    __slots__ = ("window_s", "bucket_s", "buckets", "totals", "first", "expires_from")

    def __init__(self, window_s: float, bucket_s: float) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.buckets: dict[int, dict[str, float]] = {}
        self.totals: dict[str, float] = {}
        self._set_first(None)

    def _set_first(self, first: int | None) -> None:
        self.first = first  # the smallest bucket index held
        #: before this event time nothing can leave the window: a per-record caller may skip expire() until
        #: then. A second early (float rounding is far smaller), so expire()'s own test stays the one that decides.
        self.expires_from = math.inf if first is None else first * self.bucket_s + self.window_s - 1.0

    def add(self, ts: float, values: Mapping[str, float]) -> None:
        """Add ``values`` at event time ``ts``."""
        bucket = self.bucket_at(ts)
        totals = self.totals
        bucket_get, totals_get = bucket.get, totals.get
        for name, value in values.items():
            bucket[name] = bucket_get(name, 0.0) + value
            totals[name] = totals_get(name, 0.0) + value

    def bucket_at(self, ts: float) -> dict[str, float]:
        """The bucket of event time ``ts``, for a caller that adds to it and to :attr:`totals` alike.

        >>> window = BucketWindow(600, 60)
        >>> for sums in (window.bucket_at(30), window.totals):   # what add(30, {"n": 1}) does
        ...     sums["n"] = sums.get("n", 0.0) + 1
        >>> window.buckets, window.totals
        ({0: {'n': 1.0}}, {'n': 1.0})
        """
        index = int(ts // self.bucket_s)
        bucket = self.buckets.get(index)
        if bucket is None:
            bucket = self.buckets[index] = {}
            if self.first is None or index < self.first:
                self._set_first(index)
        return bucket

    def expire(self, now: float) -> Sequence[tuple[int, dict[str, float]]]:
        """Remove the buckets older than the window at ``now``; return them oldest first."""
        oldest = int((now - self.window_s) // self.bucket_s) + 1
        if self.first is None or self.first >= oldest:
            return ()  # the common case (called per record): nothing has left the window yet
        buckets = self.buckets
        stale = sorted(i for i in buckets if i < oldest)
        out = []
        totals = self.totals
        for index in stale:
            bucket = buckets.pop(index)
            for name, value in bucket.items():
                left = totals.get(name, 0.0) - value
                if left <= 1e-9:
                    totals.pop(name, None)
                else:
                    totals[name] = left
            out.append((index, bucket))
        self._set_first(min(buckets) if buckets else None)
        return out

    def get(self, name: str) -> float:
        return self.totals.get(name, 0.0)

    # -- snapshots: a plain tuple pickles faster than the slots' dict ---------------------------
    def __getstate__(self) -> tuple[Any, ...]:
        return self.window_s, self.bucket_s, self.buckets, self.totals, self.first

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if state[0] is None:  # written before snapshot version 2: (None, slots), no ``first``
            slots = state[1]
            buckets = slots["buckets"]
            state = (slots["window_s"], slots["bucket_s"], buckets, slots["totals"], min(buckets) if buckets else None)
        self.window_s, self.bucket_s, self.buckets, self.totals, first = state
        self._set_first(first)


class DecayedSums:
    """Exponentially decayed sums by event time: weight halves every ``half_life_s`` seconds."""

    __slots__ = ("half_life_s", "sums", "last_ts", "max_names")

    def __init__(self, half_life_s: float, max_names: int = 64) -> None:
        self.half_life_s = half_life_s
        self.sums: dict[str, float] = {}
        self.last_ts: float | None = None
        self.max_names = max_names

    def fold(self, ts: float, values: Mapping[str, float]) -> None:
        """Decay everything to ``ts``, then add ``values``."""
        if self.last_ts is not None and ts > self.last_ts:
            factor = 0.5 ** ((ts - self.last_ts) / self.half_life_s)
            self.sums = {name: decayed for name, v in self.sums.items() if (decayed := v * factor) > 1e-6}
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        sums = self.sums
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
        if len(sums) > self.max_names:  # keep the heaviest categories ("n:m:<model>"); plain totals always stay
            categories = sorted((kv for kv in sums.items() if ":" in kv[0]), key=lambda kv: -kv[1])
            drop = {name for name, _ in categories[self.max_names:]}
            self.sums = {name: v for name, v in sums.items() if name not in drop}

    def get(self, name: str) -> float:
        return self.sums.get(name, 0.0)

    def __getstate__(self) -> tuple[Any, ...]:
        return self.half_life_s, self.sums, self.last_ts, self.max_names

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if state[0] is None:  # written before snapshot version 2: (None, slots)
            slots = state[1]
            state = (slots["half_life_s"], slots["sums"], slots["last_ts"], slots["max_names"])
        self.half_life_s, self.sums, self.last_ts, self.max_names = state
