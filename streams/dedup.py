"""Drop a gateway record that arrives a second time: the same ``event_id`` (or ``outcome_id``) again.

Gateways and clients retry: an HTTP client whose 2xx got lost posts the batch again, a
LiteLLM callback retries on a timeout, a producer without idempotence resends. Each copy
is a valid record with the same id, and without this check its cost would be counted
twice, by the detectors and in ClickHouse. The parse stage asks :class:`RecentRecordIds`
before it produces a record, so the canonical events topic carries each id once.

Per raw partition it remembers the ids of the last ``capacity`` records (their hashes, oldest
forgotten first). A copy is caught when it lands on the same raw partition as the original,
within that many records of it: the ingest service and the documented producer key raw
messages by API key, so a retry of one key's record meets its original.

**Durable across crashes and rebalances.** The ids are also written, in chunks of
:data:`CHUNK_IDS`, to the state table under ``\\x00dedup:<partition>:<slot>`` (a ring of slots,
so the compacted changelog keeps about ``capacity`` ids per partition), in the same
transaction as the raw offsets they belong to. A worker that takes a partition over, after a
crash or a rebalance, starts from exactly the ids whose records were committed: a copy of a
committed record is still dropped, and a record whose first parse was never committed is not
mistaken for its own copy.

``spendwatch backtest`` drops repeated ids over the whole file (it holds every record anyway),
so for copies within the window both give the same pages.

>>> seen = RecentRecordIds(capacity=2)
>>> [seen.first_time(0, 1, i) for i in ("a", "b", "a", "c", "a")]
[True, True, False, True, True]
>>> seen.first_time(1, 1, "c")  # another partition has its own ids
True
>>> saved = seen.take_chunks(0)  # what the next commit writes for partition 0
>>> resumed = RecentRecordIds(capacity=2)  # another worker, after a crash
>>> resumed.restore(0, 7, [value for _, value in saved])
>>> resumed.first_time(0, 7, "a"), resumed.first_time(0, 7, "b")
(False, True)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from spendwatch.schemas.event import GatewayEvent
    from spendwatch.schemas.outcome import OutcomeEvent

#: Ids per persisted chunk: at most 512 ids of at most 512 characters, well under Kafka's 1 MiB.
CHUNK_IDS = 512
CHUNK_PREFIX = "\x00dedup:"


def record_key(record: GatewayEvent | OutcomeEvent) -> str:
    """The id two copies of one record share: ``event:<event_id>`` or ``outcome:<outcome_id>``."""
    event_id = getattr(record, "event_id", None)
    return f"event:{event_id}" if event_id is not None else f"outcome:{record.outcome_id}"  # type: ignore[union-attr]


def chunk_key(partition: int, slot: int) -> str:
    """The state table key of one slot of a raw partition's ring of id chunks.

    >>> chunk_key(3, 7), chunk_partition(chunk_key(3, 7)), chunk_partition("key:k1")
    ('\\x00dedup:3:7', 3, None)
    """
    return f"{CHUNK_PREFIX}{partition}:{slot}"


def chunk_partition(key: str) -> int | None:
    """The raw partition of a chunk key, None for any other key."""
    if not key.startswith(CHUNK_PREFIX):
        return None
    return int(key[len(CHUNK_PREFIX):].partition(":")[0])


@dataclass(slots=True)
class _Partition:
    generation: int
    ids: set[int] = field(default_factory=set)
    # Oldest first. Not a dict in insertion order: deleting a dict's oldest entries leaves holes that
    # every later `next(iter(d))` walks again, which made this cost 2.5 µs per record at 20k ids.
    order: deque[int] = field(default_factory=deque)
    seq: int = 0  # number of the chunk being filled (persisted: a resumed partition goes on numbering)
    chunk: list[str] = field(default_factory=list)  # its ids, as text (hash() differs between processes)
    full: list[tuple[int, list[str]]] = field(default_factory=list)  # chunks filled since the last take_chunks()
    changed: bool = False  # the chunk being filled has ids not yet taken


class RecentRecordIds:
    """The ids of the last ``capacity`` records of each raw partition, in the current consumer generation."""

    def __init__(self, capacity: int, *, durable: bool = True) -> None:
        self.capacity = capacity
        #: Keep the ids as text for :meth:`take_chunks`; False: in memory only, reset with each generation.
        self.durable = durable
        #: Slots per partition: enough full chunks for ``capacity`` ids besides the one being filled.
        self.slots = math.ceil(capacity / CHUNK_IDS) + 1
        self._partitions: dict[int, _Partition] = {}

    def knows(self, partition: int, generation: int) -> bool:
        """Whether ``partition`` has been started or restored in this consumer generation."""
        state = self._partitions.get(partition)
        return state is not None and state.generation == generation

    def first_time(self, partition: int, generation: int, record_id: str) -> bool:
        """True for an id not seen recently on ``partition`` (and remember it); False for a copy."""
        state = self._partitions.get(partition)
        if state is None or state.generation != generation:
            state = self._partitions[partition] = _Partition(generation)
        ids = state.ids
        key = hash(record_id)  # 64-bit, per process (PYTHONHASHSEED): chunks keep the text
        if key in ids:
            return False
        ids.add(key)
        order = state.order
        order.append(key)
        if len(order) > self.capacity:
            ids.discard(order.popleft())
        if not self.durable:
            return True
        chunk = state.chunk
        chunk.append(record_id)
        state.changed = True
        if len(chunk) == CHUNK_IDS:
            state.full.append((state.seq, chunk))
            state.seq += 1
            state.chunk = []
            state.changed = False
        return True

    def take_chunks(self, partition: int) -> list[tuple[str, bytes]]:
        """The (key, value) chunk writes since the last call, for the commit of ``partition``'s raw offsets."""
        state = self._partitions.get(partition)
        if state is None:
            return []
        chunks = state.full
        if state.changed:
            chunks.append((state.seq, state.chunk))
        writes = [(chunk_key(partition, seq % self.slots), orjson.dumps([seq, ids])) for seq, ids in chunks]
        state.full, state.changed = [], False
        return writes

    def restore(self, partition: int, generation: int, values: Iterable[bytes]) -> None:
        """Start ``partition`` in ``generation`` from committed chunks (the values of its chunk keys)."""
        chunks = sorted(orjson.loads(value) for value in values)
        state = self._partitions[partition] = _Partition(generation)
        if not chunks:
            return
        last_seq = chunks[-1][0]
        # slots reused after a smaller capacity, or left over from a larger one, hold older chunks
        chunks = [(seq, ids) for seq, ids in chunks if seq > last_seq - self.slots]
        recent = [record_id for _, ids in chunks for record_id in ids][-self.capacity:]
        state.order.extend(hash(record_id) for record_id in recent)
        state.ids.update(state.order)
        last_ids = chunks[-1][1]
        if len(last_ids) < CHUNK_IDS:
            state.seq, state.chunk = last_seq, list(last_ids)
        else:
            state.seq = last_seq + 1

    def forget(self) -> None:
        """Drop everything (partitions revoked)."""
        self._partitions.clear()
