"""Detection for one partition of the routed topic: hot state in memory, event-time order, clock ticks.

:class:`PartitionDetector` is plain Python (no Kafka, no Faust): the detect agent feeds
it envelopes and, at every commit, asks it for what to persist. It owns

* the **live states** of every state key in its partition (loaded once from the state
  table, then kept in memory; only the ones that changed are written back);
* a **reorder buffer**: records wait until the partition's stream time (the largest
  event time seen) is ``allowed_lateness`` past them and are then processed in
  event-time order, which is what the detectors and the backtest assume. A record later
  than that is still processed at once (its cost is never dropped) and counted as late;
* the **partition clock**: each time the processed event time crosses a multiple of
  the engine's tick interval, every live state is ticked at that boundary before the
  record that crossed it is processed.

Crash safety. Offsets of the routed topic are committed in the same Kafka transaction
as the state written at that commit, but a record still in the reorder buffer keeps its
envelope's offset uncommitted, so after a crash the envelopes from that offset on are
read again. The partition's metadata (written in the same transaction) names the last
envelope seen and the records of each envelope that were still waiting; on replay only
those are taken again, so nothing is applied twice and nothing is lost.
"""

from __future__ import annotations

import heapq
import logging
import math
from datetime import UTC, datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any

import orjson

from spendwatch.detectors.clock import TickClock

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from spendwatch.detectors.base import Observation
    from spendwatch.detectors.engine import Engine, SubjectState
    from spendwatch.schemas.alert import Alert
    from spendwatch.schemas.dead_letter import DeadLetter

#: Prefix of the per-partition metadata keys in the state table (state keys never start with NUL).
META_PREFIX = "\x00partition:"


def meta_key(partition: int) -> str:
    return f"{META_PREFIX}{partition}"


def is_meta_key(key: str) -> bool:
    return key.startswith(META_PREFIX)


@dataclass(slots=True)
class Flush:
    """What one commit persists for a partition."""

    states: list[tuple[str, bytes]]
    meta: tuple[str, bytes]
    alerts: list[Alert]
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class DetectorStats:
    records: int = 0
    late: int = 0
    ticks: int = 0


@dataclass
class PartitionDetector:
    """Live detector states of one routed partition; see the module docstring."""

    engine: Engine
    partition: int
    allowed_lateness_s: float
    max_buffered: int = 200_000
    states: dict[str, SubjectState] = field(default_factory=dict)
    stats: DetectorStats = field(default_factory=DetectorStats)

    def __post_init__(self) -> None:
        config = self.engine.config
        self._clock = TickClock(config.tick_interval_seconds, config.idle_tick_seconds,
                                int(config.clock_catchup_hours * 3600))
        self._hot: dict[str, SubjectState] = {}  # states with an active episode: ticked at every boundary
        self._dirty: set[str] = set()
        self._alerts: list[Alert] = []
        self._dead_letters: list[DeadLetter] = []
        self._heap: list[tuple[float, int, int, int, list[str], Observation]] = []
        self._seq = count()
        self._max_seen = -math.inf  # largest event time accepted
        self._processed = -math.inf  # largest event time processed
        self.applied = 0  # records applied in this partition since it was created (persisted; for operators and tests)
        self._seen_through = -1  # highest envelope offset accepted
        self._replay_pending: dict[int, set[int]] = {}  # from the last commit: offset -> indices still waiting
        self._waiting: dict[int, int] = {}  # offset -> records of that envelope still in the buffer
        self._done: list[int] = []  # envelope offsets fully processed since the last call to take_done()

    # -- restore -------------------------------------------------------------------------
    def restore(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Load this partition's states and metadata from the state table."""
        for key, blob in items:
            if is_meta_key(key):
                self._load_meta(blob)
            else:
                state = self.states[key] = self.engine.loads(blob)
                if state.episodes.active:
                    self._hot[key] = state

    def _load_meta(self, blob: bytes) -> None:
        meta = orjson.loads(blob)
        self._max_seen = meta["max_seen"] if meta["max_seen"] is not None else -math.inf
        self._processed = meta["processed"] if meta["processed"] is not None else -math.inf
        self._clock.next_tick = meta["next_tick"]
        self.applied = meta.get("applied", 0)
        self._seen_through = meta["seen_through"]
        self._replay_pending = {int(o): set(idx) for o, idx in meta["pending"].items()}

    def rewind_clock_past(self, latest: float) -> bool:
        """Forget a clock, and the states, restored beyond ``latest`` (POSIX seconds).

        A far-future record accepted before event times were checked left them there: every later
        record would count as late, no tick would run again, and those states would ignore what
        comes (their windows are past it). The next record places the clock anew and starts a
        fresh state. Returns whether anything was forgotten.
        """
        stale = [key for key, state in self.states.items() if state.last_ts > latest]
        clock = max(self._max_seen, self._processed, self._clock.next_tick or -math.inf)
        if clock <= latest + self._clock.tick and not stale:
            return False
        log.warning("partition %d: clock and %d states restored past %s (a far-future record accepted before "
                    "event times were checked): restarting them from the next record",
                    self.partition, len(stale), datetime.fromtimestamp(latest, UTC).isoformat())
        if clock > latest + self._clock.tick:
            self._max_seen = self._processed = -math.inf
            self._clock.next_tick = None
        for key in stale:
            del self.states[key]
            self._hot.pop(key, None)
        return True

    # -- input ---------------------------------------------------------------------------
    def accept(self, offset: int, entries: list[tuple[list[str], Observation]]) -> list[Alert]:
        """Take one envelope (:func:`~spendwatch.detectors.observation_wire.decode_envelope`); alerts wait for :meth:`flush`."""
        if offset <= self._seen_through:
            wanted = self._replay_pending.pop(offset, set())
        else:
            wanted = None
            self._seen_through = offset
        waiting = 0
        for index, (keys, record) in enumerate(entries):
            if wanted is not None and index not in wanted:
                continue  # applied before the crash, and committed with the state
            ts = record.ts
            heapq.heappush(self._heap, (ts, next(self._seq), offset, index, keys, record))
            waiting += 1
            if ts > self._max_seen:
                self._max_seen = ts
        if waiting:
            self._waiting[offset] = self._waiting.get(offset, 0) + waiting
        elif offset not in self._waiting:  # a redelivered envelope is done only once its buffered records are
            self._done.append(offset)
        self.release()
        return self._alerts

    def release(self, *, everything: bool = False) -> None:
        """Process buffered records up to the watermark (stream time minus the allowed lateness)."""
        watermark = math.inf if everything else self._max_seen - self.allowed_lateness_s
        heap = self._heap
        while heap and (heap[0][0] <= watermark or len(heap) > self.max_buffered):
            ts, _, offset, _, keys, record = heapq.heappop(heap)
            self._process(ts, keys, record)
            left = self._waiting[offset] - 1
            if left:
                self._waiting[offset] = left
            else:
                del self._waiting[offset]
                self._done.append(offset)

    @property
    def buffered(self) -> int:
        return len(self._heap)

    def take_done(self) -> list[int]:
        """Envelope offsets whose records have all been processed (safe to acknowledge)."""
        done, self._done = self._done, []
        return done

    # -- processing ----------------------------------------------------------------------
    def _process(self, ts: float, keys: list[str], record: Observation) -> None:
        self.stats.records += 1
        self.applied += 1
        if ts < self._processed:
            self.stats.late += 1
        else:
            self._advance_clock(ts)
            self._processed = ts
        engine, states, alerts, dirty, hot = self.engine, self.states, self._alerts, self._dirty, self._hot
        for key in keys:
            state = states.get(key)
            if state is None:
                state = states[key] = engine.new_state(key)
            try:
                out = engine.process(state, record)
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the partition
                self._failed(key, record, exc)
                continue
            if out:
                alerts.extend(out)
            dirty.add(key)
            if state.episodes.active:
                hot[key] = state
            elif key in hot:
                del hot[key]

    def _advance_clock(self, ts: float) -> None:
        """Tick the boundaries up to ``ts`` as :func:`~spendwatch.detectors.backtest.run_backtest` does.

        States with an active episode are ticked at every boundary, all states at idle
        boundaries (the engine's tick is a no-op for the others in between); a long gap costs
        a bounded number of ticks (:class:`~spendwatch.detectors.clock.TickClock`).
        """
        hot = self._hot
        for boundary, on_idle_boundary in self._clock.boundaries(ts, hot):
            self._tick(boundary, self.states if on_idle_boundary else hot)

    def _tick(self, boundary: int, states: dict[str, SubjectState]) -> None:
        self.stats.ticks += 1
        now = datetime.fromtimestamp(boundary, UTC)
        tick, hot = self.engine.tick, self._hot
        for key, state in list(states.items()):
            try:
                out = tick(state, now)
            except Exception:  # noqa: BLE001 - a detector bug must not stop the partition
                log.exception("tick of %s at %s failed", key, now)
                continue
            if out:
                self._alerts.extend(out)
                self._dirty.add(key)
            if state.episodes.active:
                hot[key] = state
            else:
                hot.pop(key, None)

    def _failed(self, key: str, record: Observation, exc: Exception) -> None:
        from spendwatch.schemas.dead_letter import DeadLetter

        log.exception("detectors failed on record %s of %s", record.record_id, key)
        # the record as the detectors saw it: its observation, named by record_id
        self._dead_letters.append(DeadLetter.for_bytes(
            orjson.dumps(record), reason=f"{type(exc).__name__}: {exc}"[:1000],
            error_type="detector_error", field=key, stage="detect"))

    # -- commit --------------------------------------------------------------------------
    def flush(self) -> Flush:
        """The changed states, the partition metadata and the alerts since the last flush."""
        dumps = self.engine.dumps
        states = [(key, dumps(self.states[key])) for key in self._dirty]
        self._dirty = set()
        alerts, self._alerts = self._alerts, []
        dead, self._dead_letters = self._dead_letters, []
        return Flush(states=states, meta=(meta_key(self.partition), self._meta()), alerts=alerts, dead_letters=dead)

    def _meta(self) -> bytes:
        pending: dict[int, list[int]] = {}
        for _, _, offset, index, _, _ in self._heap:
            pending.setdefault(offset, []).append(index)
        # envelopes seen before a crash whose waiting records were not re-read yet stay pending
        for offset, indices in self._replay_pending.items():
            pending.setdefault(offset, []).extend(indices)
        return orjson.dumps({
            "max_seen": None if self._max_seen == -math.inf else self._max_seen,
            "processed": None if self._processed == -math.inf else self._processed,
            "next_tick": self._clock.next_tick,
            "seen_through": self._seen_through,
            "applied": self.applied,
            "pending": {str(o): sorted(idx) for o, idx in pending.items()},
        }, option=orjson.OPT_NON_STR_KEYS)

    def live_keys(self) -> Iterator[str]:
        return iter(self.states)


def partition_items(items: Iterable[tuple[Any, Any]], partition: int, partitions: int) -> Iterator[tuple[str, bytes]]:
    """The (state key, blob) items of one partition, from a table holding several.

    Besides the detector states of the partition: its metadata and the retry-dedup id chunks of the
    raw partition of the same number.
    """
    from spendwatch.streams.dedup import chunk_partition
    from spendwatch.streams.pipeline import state_partition

    for raw_key, blob in items:
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        if is_meta_key(key):
            if key == meta_key(partition):
                yield key, blob
        elif key[0] == "\x00":  # the raw partition's retry-dedup chunks (spendwatch.streams.dedup)
            if chunk_partition(key) == partition:
                yield key, blob
        elif state_partition(key, partitions) == partition:
            yield key, blob
