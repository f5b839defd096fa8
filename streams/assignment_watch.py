"""Liveness of a worker's group membership: /healthz fails when it cannot get partitions for too long.

A worker stuck joining its consumer group (a rebalance that never completes) processes
nothing, yet its event loop answers: without this check /healthz stays 200 and nothing
restarts it. The watch records when the last rebalance began (or when the worker started)
and whether it has completed since; an assignment counts as complete even when it is
empty (more workers than partitions: an idle worker is healthy).

>>> now = [0.0]
>>> watch = AssignmentWatch(limit_s=300, clock=lambda: now[0])
>>> now[0] = 299; watch.check()[0]
True
>>> now[0] = 301; watch.check()
(False, 'no partition assignment for 301 s (limit 300 s): the consumer group does not settle')
>>> watch.assigned(); watch.check()
(True, 'ok')
>>> watch.rebalancing(); now[0] = 700; watch.check()[0]
False
>>> AssignmentWatch(limit_s=0, clock=lambda: now[0]).check()  # 0: off
(True, 'ok')
"""

from __future__ import annotations

import time
from collections.abc import Callable


class AssignmentWatch:
    """How long the worker has been without a settled partition assignment."""

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._settled = False
        self._since = clock()

    def rebalancing(self) -> None:
        """A rebalance began (partitions revoked): the clock starts, unless one was already running."""
        if self._settled:
            self._settled = False
            self._since = self._clock()

    def assigned(self) -> None:
        """The group settled and handed this worker its partitions (possibly none)."""
        self._settled = True

    def check(self) -> tuple[bool, str]:
        """A liveness check: fails once the worker waited longer than ``limit_s`` for an assignment."""
        if self._settled or not self.limit_s:
            return True, "ok"
        waited = self._clock() - self._since
        if waited <= self.limit_s:
            return True, "ok"
        return False, (f"no partition assignment for {waited:.0f} s (limit {self.limit_s:.0f} s): "
                       "the consumer group does not settle")
