"""Who is spending: small top-N accumulators of models, sessions and tags, per window.

Each window is kept as rotating generations of bounded "space-saving" counters
(Metwally et al.): at most ``top_n`` names per kind per generation, so a key with a
million sessions still snapshots in a few kilobytes; the heaviest spenders are exact
as long as they stay in the top.

A generation is a plain ``{kind: {name: [micro-dollars, requests]}}`` dict: cheaper to
update per request and to pickle than one object per counter.
"""

from __future__ import annotations

from typing import Any

from spendwatch.detectors.base import Observation
from spendwatch.detectors.snapshot import restore

Counts = dict[str, list[int]]  # name -> [micro-dollars, requests]


def count(counts: Counts, name: str, cost: int, top_n: int) -> None:
    """Add one request of ``name`` to bounded dollar counters (space-saving).

    When ``top_n`` names are already counted, the smallest makes room and the new name
    inherits its dollars (an over-estimate that keeps a heavy newcomer in the top).

    >>> counts = {}
    >>> for name, cost in [("a", 5), ("b", 1), ("c", 2), ("a", 5)]:
    ...     count(counts, name, cost, 2)
    >>> counts
    {'a': [10, 2], 'c': [3, 1]}
    """
    entry = counts.get(name)
    if entry is not None:
        entry[0] += cost
        entry[1] += 1
    elif len(counts) < top_n:
        counts[name] = [cost, 1]
    else:
        smallest = min(counts, key=lambda n: counts[n][0])  # the first of equals, in insertion order
        counts[name] = [counts.pop(smallest)[0] + cost, 1]


def _generation() -> dict[str, Counts]:
    return {"model": {}, "session": {}, "tag": {}}


class TopN:
    """The counters of one kind in snapshots written before version 2 (loaded, never written)."""

    __slots__ = ("top_n", "cost", "requests")

    def counts(self) -> Counts:
        return {name: [cost, self.requests[name]] for name, cost in self.cost.items()}


class ContributorWindow:
    """Top models, sessions and tags over the last ``generations`` x ``generation_seconds``.

    >>> window = ContributorWindow(3600, 2, top_n=8)
    >>> window.add(7200, 5, "o3", "s1", ("ci",))
    >>> window.add(10_800, 2, "o3", None, ())        # an hour later: the first hour is the previous generation
    >>> window.totals("model"), window.totals("tag")
    ([('o3', 7, 2)], [('ci', 5, 1)])
    """

    __slots__ = ("generation_seconds", "top_n", "generation", "current", "previous")

    KINDS = ("model", "session", "tag")

    def __init__(self, generation_seconds: int, generations: int, top_n: int) -> None:
        self.generation_seconds = generation_seconds
        self.top_n = top_n
        self.generation = 0
        self.current: dict[str, Counts] = _generation()
        self.previous: list[dict[str, Counts]] = [_generation() for _ in range(generations - 1)]

    def add(self, t: int, cost: int, model: str, session: str | None, tags: tuple[str, ...]) -> None:
        """Count one request at epoch second ``t``."""
        current = self.current
        if t // self.generation_seconds != self.generation:
            current = self.generation_at(t)
            if current is None:
                return
        count(current["model"], model, cost, self.top_n)
        if session:
            count(current["session"], session, cost, self.top_n)
        for tag in tags:
            count(current["tag"], tag, cost, self.top_n)

    def generation_at(self, t: int) -> dict[str, Counts] | None:
        """The counters of epoch second ``t``'s generation, rotating to it; None for a rotated-out one."""
        g = t // self.generation_seconds
        if g != self.generation:
            if g < self.generation:
                return None  # late record from a rotated-out generation: totals still count it, attribution does not
            self._rotate(g)
        return self.current

    def _rotate(self, g: int) -> None:
        previous = self.previous
        for _ in range(min(g - self.generation, len(previous) + 1)):
            if previous:
                previous.pop()
                previous.insert(0, self.current)
            self.current = {}  # a generation skipped over stays empty: no counters built for it
        self.current = _generation()
        self.generation = g

    def totals(self, kind: str) -> list[tuple[str, int, int]]:
        """(name, micro-dollars, requests) of one kind over the whole window, largest first."""
        cost: dict[str, int] = {}
        requests: dict[str, int] = {}
        for gen in (self.current, *self.previous):
            for name, (c, r) in gen.get(kind, {}).items():
                cost[name] = cost.get(name, 0) + c
                requests[name] = requests.get(name, 0) + r
        return sorted(((n, c, requests[n]) for n, c in cost.items()), key=lambda x: (-x[1], x[0]))

    # -- snapshots ---------------------------------------------------------------------------
    def __getstate__(self) -> tuple[Any, ...]:
        return self.generation_seconds, self.top_n, self.generation, self.current, self.previous

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if state[0] is None:  # written before version 2: (None, slots) with TopN objects
            slots = state[1]
            state = (slots["generation_seconds"], slots["top_n"], slots["generation"],
                     _from_topn(slots["current"]), [_from_topn(gen, skipped_if_empty=True) for gen in slots["previous"]])
        self.generation_seconds, self.top_n, self.generation, self.current, self.previous = state


def _from_topn(generation: dict[str, TopN], *, skipped_if_empty: bool = False) -> dict[str, Counts]:
    counts = {**_generation(), **{kind: top.counts() for kind, top in generation.items()}}
    if skipped_if_empty and not any(counts.values()):
        return {}  # a past generation without a request was skipped over: empty, as _rotate leaves one now
    return counts


class Contributors:
    """Two windows: ``short`` (the last 1-2 hours) and ``day`` (the last 24-30 hours)."""

    __slots__ = ("short", "day")

    def __init__(self, top_n: int = 8) -> None:
        self.short = ContributorWindow(3600, 2, top_n)
        self.day = ContributorWindow(6 * 3600, 5, top_n)

    def __getstate__(self) -> tuple[Any, ...]:
        return self.short.__getstate__(), self.day.__getstate__()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if state[0] is None:  # written before snapshot version 2: (None, slots) of the window objects
            self.short, self.day = state[1]["short"], state[1]["day"]
            return
        self.short, self.day = restore(ContributorWindow, state[0]), restore(ContributorWindow, state[1])

    def add(self, obs: Observation) -> None:
        t = int(obs.ts)
        self.short.add(t, obs.cost, obs.model, obs.session_id, obs.tags)
        self.day.add(t, obs.cost, obs.model, obs.session_id, obs.tags)
