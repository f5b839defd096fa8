"""The local RocksDB store is checked against the state changelog before the worker starts.

The store records, per partition, the last changelog offset it holds (Faust's "persisted
offset"). Faust 0.15 checks it at every recovery against a "highwater" that, under
``exactly_once``, is aiokafka's *cached* last stable offset: ``None`` until this process has
fetched that changelog partition, which Faust turns into -1. A restarted worker whose
recovery runs before the first fetch then stops with ``ConsistencyError`` ("persisted offset
... > -1"), at every restart until its state directory is deleted. So Faust's check is off
(``recovery_consistency_check=False`` in :func:`spendwatch.streams.app.create_app`) and this
module does it right, once, at start-up, before Faust opens the store: a partition whose
persisted offset is not below the changelog's committed end (asked of the broker with a
``read_committed`` ListOffsets) holds state the changelog does not (the changelog was
truncated or recreated, or its last write never committed). Its local database is deleted,
and Faust rebuilds it from the changelog: discard and recover, never crash-loop.

The persisted offset lives in the partition's database under the store's ``offset_key``,
written by Faust's ``set_persisted_offset`` after each commit (:mod:`spendwatch.streams.store_writes`);
that layout is Faust's, and the worker checks the Faust version and the store's attributes before it
gets here (:func:`spendwatch.streams.faust_internals.check`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spendwatch.streams.app import StreamsApp

log = logging.getLogger(__name__)

def persisted_offset(path: Path, offset_key: bytes) -> int | None:
    """The changelog offset a partition's RocksDB database says it holds (None: none recorded)."""
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        value = db.get(offset_key)
    finally:
        db.close()
    return int(value) if value is not None else None


async def changelog_ends(bootstrap_servers: str, topic: str, partitions: int,
                         client_options: Mapping[str, Any] | None = None) -> dict[int, int]:
    """The committed end offset (last stable offset) of every partition of ``topic``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, isolation_level="read_committed",
                                group_id=None, enable_auto_commit=False, **dict(client_options or {}))
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


def discard_state_ahead_of_changelog(streams: StreamsApp, ends: Mapping[int, int]) -> list[int]:
    """Delete the local database of every partition whose persisted offset is at or past the changelog's end.

    Returns the partitions discarded. Call it before the worker starts (nothing may have the databases open).
    """
    store = streams.state.data
    if not hasattr(store, "partition_path"):  # the memory store: nothing local survives a restart
        return []
    discarded = []
    for partition, end in sorted(ends.items()):
        path = store.partition_path(partition)
        if not path.exists():
            continue
        offset = persisted_offset(path, store.offset_key)
        if offset is not None and offset >= end:
            log.warning("partition %d: the local state store holds changelog offset %d but the changelog's committed "
                        "end is %d: discarding the local copy (%s) and recovering from the changelog",
                        partition, offset, end, path)
            shutil.rmtree(path)
            discarded.append(partition)
    return discarded
