"""The event-time clock shared by the backtest and the stream workers: which tick boundaries to run.

Before a record at event time ``ts`` the states are ticked at every boundary (a multiple of
the tick interval) the clock crosses -- but only where a tick can change something: at every
boundary while some state has an active episode (*hot*), else only on idle boundaries
(multiples of ``idle_tick_seconds``).

A long gap in event time (a partition silent over a holiday, or one record dated years
ahead) must not cost one tick per crossed boundary. After ``catchup_seconds`` of boundaries
past the clock's position the rest of the gap is skipped: the clock jumps to the last idle
boundary at or before ``ts`` and goes on from there. Whatever the gap, one advance runs at
most ``catchup_seconds / tick`` + ``idle / tick`` + 1 boundaries, and the states still see the
end of the gap (windows roll, episodes repeat or resolve) at that last idle boundary.

>>> clock = TickClock(tick=60, idle=3600, catchup_seconds=2 * 3600)
>>> hot = {}
>>> [b for b, _ in clock.boundaries(30.0, hot)]  # the first record only places the clock
[]
>>> [b for b, _ in clock.boundaries(3 * 3600 + 5, hot)]  # quiet: idle boundaries only
[3600, 7200, 10800]
>>> far = 253402300799.0  # 9999-12-31T23:59:59Z
>>> ticked = [b for b, _ in clock.boundaries(far, {"key:k1": "an active episode"})]
>>> len(ticked)  # two hours of minutes, the jump to the last hour, its minutes: not 70 million hours
181
>>> clock.next_tick > far
True
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from dataclasses import dataclass


@dataclass(slots=True)
class TickClock:
    """Where the event-time clock is (``next_tick``: the next boundary to cross) and how it moves.

    Parameters
    ----------
    tick
        Tick interval, seconds.
    idle
        Idle tick interval, seconds (a multiple of ``tick``).
    catchup_seconds
        Most event time one advance ticks through before skipping to the end of the gap.
    next_tick
        The next boundary; ``None`` until the first record places the clock.
    """

    tick: int
    idle: int
    catchup_seconds: int
    next_tick: int | None = None

    def boundaries(self, ts: float, hot: Sized) -> Iterator[tuple[int, bool]]:
        """The boundaries to tick before a record at ``ts``, each with whether it is an idle boundary.

        ``hot`` (the states with an active episode) is read again after each boundary is
        ticked, as the caller's tick may cool or heat states. Consume the iterator fully.
        """
        tick, idle = self.tick, self.idle
        if self.next_tick is None:
            self.next_tick = (int(ts) // tick + 1) * tick
        skip_after = self.next_tick + self.catchup_seconds
        while self.next_tick <= ts:
            if self.next_tick > skip_after:
                # a long gap: everything between here and the last idle boundary at or before ts is skipped
                last_idle = int(ts) // idle * idle
                skip_after = math.inf
                if last_idle < self.next_tick:
                    self.next_tick = (int(ts) // tick + 1) * tick
                    break
                self.next_tick = last_idle
            boundary = self.next_tick
            on_idle_boundary = boundary % idle == 0
            if on_idle_boundary or hot:
                yield boundary, on_idle_boundary
                self.next_tick = boundary + tick
            if not hot:  # nothing happens before the next idle boundary: jump there (or past this record)
                nt = self.next_tick
                next_idle = -(-nt // idle) * idle
                self.next_tick = next_idle if next_idle <= ts else max(nt, (int(ts) // tick + 1) * tick)
