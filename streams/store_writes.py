"""Store writes: committed detector state into the local table store, only after its transaction commits.

The commit protocol (:mod:`spendwatch.streams.commit_protocol`) sends a partition's changed
states, dedup ids and metadata to the state changelog inside the partition's transaction and
hands the same writes here. They are written to the local store (RocksDB or memory) only once
that transaction has committed, with the changelog offset of the last one as the store's
persisted offset: a crash before the commit leaves the store exactly at the last commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from faust.types import TP

from spendwatch.streams import faust_internals


class StoreWrites:
    """Writes sent to the changelog but not yet committed, per state partition."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.unstored: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)  # sent, not yet committed
        self.changelog_offsets: dict[int, int] = {}

    def add(self, partition: int, writes: Iterable[tuple[bytes, bytes | None]],
            changelog_offset: int | None = None) -> None:
        """Writes sent in ``partition``'s open transaction; ``changelog_offset``: the last one's offset."""
        if changelog_offset is not None:
            self.changelog_offsets[partition] = changelog_offset
        self.unstored[partition].extend(writes)

    def pending(self) -> set[int]:
        """The partitions with writes not yet in the store."""
        return set(self.unstored)

    def store(self, partitions: Iterable[int]) -> None:
        """Write committed state to the local table store (RocksDB or memory)."""
        table = self.table
        store = table.data
        changelog = table.changelog_topic.get_topic_name()
        for partition in partitions:
            writes = self.unstored.pop(partition, None)
            if not writes:
                continue
            for key, blob in writes:
                faust_internals.store_put(store, partition, key, blob)
            offset = self.changelog_offsets.get(partition)
            if offset is not None:
                store.set_persisted_offset(TP(changelog, partition), offset)

    def forget(self) -> None:
        """Drop the writes of transactions that will not commit here (partitions revoked)."""
        self.unstored.clear()
