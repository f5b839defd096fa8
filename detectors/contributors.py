"""Who is spending: small top-N accumulators of models, sessions and tags, per window.

Each window is kept as rotating generations of bounded "space-saving" counters
(Metwally et al.): at most ``top_n`` names per kind per generation, so a key with a
million sessions still snapshots in a few kilobytes; the heaviest spenders are exact
as long as they stay in the top.
"""

from __future__ import annotations

from spendwatch.detectors.base import Observation


class TopN:
    """Bounded dollar counters per name (space-saving).

    >>> top = TopN(2)
    >>> for name, cost in [("a", 5), ("b", 1), ("c", 2), ("a", 5)]:
    ...     top.add(name, cost)
    >>> top.items()
    [('a', 10, 2), ('c', 3, 1)]
    """

    __slots__ = ("top_n", "cost", "requests")

    def __init__(self, top_n: int) -> None:
        self.top_n = top_n
        self.cost: dict[str, int] = {}
        self.requests: dict[str, int] = {}

    def add(self, name: str, cost: int) -> None:
        counts = self.cost
        if name in counts:
            counts[name] += cost
            self.requests[name] += 1
        elif len(counts) < self.top_n:
            counts[name] = cost
            self.requests[name] = 1
        else:
            smallest = min(counts, key=counts.__getitem__)
            floor = counts.pop(smallest)
            self.requests.pop(smallest)
            counts[name] = floor + cost
            self.requests[name] = 1

    def items(self) -> list[tuple[str, int, int]]:
        """(name, micro-dollars, requests), largest first."""
        return sorted(((n, c, self.requests[n]) for n, c in self.cost.items()), key=lambda x: (-x[1], x[0]))


class ContributorWindow:
    """Top models, sessions and tags over the last ``generations`` x ``generation_seconds``."""

    __slots__ = ("generation_seconds", "top_n", "generation", "current", "previous")

    KINDS = ("model", "session", "tag")

    def __init__(self, generation_seconds: int, generations: int, top_n: int) -> None:
        self.generation_seconds = generation_seconds
        self.top_n = top_n
        self.generation = 0
        self.current: dict[str, TopN] = {}
        self.previous: list[dict[str, TopN]] = [{} for _ in range(generations - 1)]

    def add(self, obs: Observation) -> None:
        g = int(obs.ts) // self.generation_seconds
        if g != self.generation:
            if g > self.generation:
                steps = min(g - self.generation, len(self.previous) + 1)
                for _ in range(steps):
                    if self.previous:
                        self.previous.pop()
                        self.previous.insert(0, self.current)
                    self.current = {}
                self.generation = g
            else:
                return  # late record from a rotated-out generation: totals still count it, attribution does not
        cost, current = obs.cost, self.current
        # the common case (a name already counted) inlined from _add: this runs twice per request
        top = current.get("model")
        if top is not None and obs.model in top.cost:
            top.cost[obs.model] += cost
            top.requests[obs.model] += 1
        else:
            self._add(current, "model", obs.model, cost)
        session = obs.session_id
        if session:
            top = current.get("session")
            if top is not None and session in top.cost:
                top.cost[session] += cost
                top.requests[session] += 1
            else:
                self._add(current, "session", session, cost)
        for tag in obs.tags:
            self._add(current, "tag", tag, cost)

    def _add(self, current: dict[str, TopN], kind: str, name: str, cost: int) -> None:
        top = current.get(kind)
        if top is None:
            top = current[kind] = TopN(self.top_n)
        counts = top.cost
        if name in counts:  # the common case, inlined from TopN.add
            counts[name] += cost
            top.requests[name] += 1
        else:
            top.add(name, cost)

    def totals(self, kind: str) -> list[tuple[str, int, int]]:
        """(name, micro-dollars, requests) of one kind over the whole window, largest first."""
        cost: dict[str, int] = {}
        requests: dict[str, int] = {}
        for gen in (self.current, *self.previous):
            top = gen.get(kind)
            if top is None:
                continue
            for name, c, r in top.items():
                cost[name] = cost.get(name, 0) + c
                requests[name] = requests.get(name, 0) + r
        return sorted(((n, c, requests[n]) for n, c in cost.items()), key=lambda x: (-x[1], x[0]))


class Contributors:
    """Two windows: ``short`` (the last 1-2 hours) and ``day`` (the last 24-30 hours)."""

    __slots__ = ("short", "day")

    def __init__(self, top_n: int = 8) -> None:
        self.short = ContributorWindow(3600, 2, top_n)
        self.day = ContributorWindow(6 * 3600, 5, top_n)

    def add(self, obs: Observation) -> None:
        self.short.add(obs)
        self.day.add(obs)
