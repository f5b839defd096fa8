"""Drop messages a worker is handed a second time within one consumer generation.

Faust seeks every stream partition back to its committed offset when a rebalance's table
recovery ends, and resets its own "already read" marker to that offset. Messages of
the same generation that the parse stage already handled (their outputs sit in the
open transaction, their offsets acknowledged but not yet committed) are then delivered
again. Parsing them again would put the same gateway events into the committed output
twice, so the parse stage asks this guard first.

Per partition the guard keeps the contiguous range of offsets handled in the current
generation. An offset inside that range is a redelivery; anything below it (the
partition was first read from further on) or above it is new. A new generation starts
a new range: what the previous one handled but did not commit was aborted with its
transaction and must be handled again.

>>> guard = RedeliveryGuard()
>>> [guard.first_time("raw", 0, generation=1, offset=o) for o in (10, 11, 12)]
[True, True, True]
>>> [guard.first_time("raw", 0, generation=1, offset=o) for o in (10, 11, 12, 13)]  # after a seek back to 10
[False, False, False, True]
>>> guard.first_time("raw", 0, generation=1, offset=9)  # below what this generation handled: new
True
>>> guard.first_time("raw", 0, generation=2, offset=11)  # a new generation replays uncommitted work
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Handled:
    generation: int
    first: int
    last: int


class RedeliveryGuard:
    """Which (topic, partition, offset) this worker already handled in the current generation."""

    def __init__(self) -> None:
        self._handled: dict[tuple[str, int], _Handled] = {}
        self.redelivered = 0

    def first_time(self, topic: str, partition: int, *, generation: int, offset: int) -> bool:
        """True if the message is new (and remember it), False if it was handled before in this generation."""
        key = (topic, partition)
        handled = self._handled.get(key)
        if handled is None or handled.generation != generation:
            self._handled[key] = _Handled(generation, offset, offset)
            return True
        if handled.first <= offset <= handled.last:
            self.redelivered += 1
            return False
        if offset > handled.last:
            handled.last = offset
        return True

    def forget(self) -> None:
        """Drop everything (partitions revoked: whatever was not committed will be handled again)."""
        self._handled.clear()
