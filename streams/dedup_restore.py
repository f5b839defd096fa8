"""Dedup restore: the retry-dedup ids of each raw partition, kept with the state and restored with it.

The parse stage drops a record whose id its raw partition saw within the last
``streams.dedup_window_records`` records (:mod:`spendwatch.streams.dedup`). At each commit the
ids parsed since the last one go to the state table in the transaction that commits the raw
offsets they came from (:meth:`DedupRestore.take_chunks`), so whoever takes a raw partition
over starts from exactly the ids of its committed records (:meth:`DedupRestore.restore_from`).
"""

from __future__ import annotations

from collections.abc import Iterable

from spendwatch import metrics
from spendwatch.streams.dedup import RecentRecordIds, chunk_partition, record_key
from spendwatch.streams.pipeline import ParsedBatch


class DedupRestore:
    """The recent record ids of the raw partitions this worker parses (None when the dedup is off)."""

    def __init__(self, window: int, raw_topic: str, *, durable: bool = True) -> None:
        self.window = window
        self.raw_topic = raw_topic
        self.recent_ids: RecentRecordIds | None = None
        self.set_durable(durable)

    def set_durable(self, durable: bool) -> None:
        """Whether ids are committed with the raw offsets: only when ``raw`` has ``streams.partitions``
        partitions, so that raw partition *p* commits in routed *p*'s transaction and moves with its state."""
        self.recent_ids = RecentRecordIds(self.window, durable=durable) if self.window else None

    def needs_restore(self, partition: int, generation: int) -> bool:
        """Whether the raw partition's ids must be read from the state table before its batch is parsed."""
        ids = self.recent_ids
        return ids is not None and ids.durable and not ids.knows(partition, generation)

    def restore_from(self, partition: int, generation: int,
                     items: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """Restore the raw partition's ids from the dedup chunks among a state partition's table ``items``;
        returns the other items (detector states and metadata)."""
        states, chunks = [], []
        for key, blob in items:
            if chunk_partition(key) is None:
                states.append((key, blob))
            else:
                chunks.append(blob)
        if self.recent_ids is not None and self.recent_ids.durable:
            self.recent_ids.restore(partition, generation, chunks)
        return states

    def drop_copies(self, batch: ParsedBatch, partition: int, generation: int) -> None:
        """Remove the records whose id this partition saw recently (see :mod:`spendwatch.streams.dedup`)."""
        if self.recent_ids is None:
            return
        first_time = self.recent_ids.first_time
        keep = [first_time(partition, generation, record_key(record)) for record in batch.records]
        if all(keep):
            return
        batch.records = [r for r, k in zip(batch.records, keep, strict=True) if k]
        batch.record_json = [j for j, k in zip(batch.record_json, keep, strict=True) if k]
        metrics.DUPLICATES.labels(self.raw_topic).inc(keep.count(False))

    def take_chunks(self, partition: int) -> list[tuple[str, bytes]]:
        """The id chunks to write in the partition's next transaction ([] unless durable)."""
        return self.recent_ids.take_chunks(partition) if self.recent_ids is not None else []

    def forget(self) -> None:
        """Forget every partition's ids (revoked): the next owner restores them from the table."""
        if self.recent_ids is not None:
            self.recent_ids.forget()
