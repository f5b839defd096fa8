"""Retry-dedup ids written as chunks at each commit and restored by another worker (no Kafka: a dict is the table)."""

from __future__ import annotations

import random

import pytest

from spendwatch.streams.dedup import CHUNK_IDS, RecentRecordIds


def commit(ids: RecentRecordIds, table: dict[str, bytes], partition: int = 0) -> None:
    table.update(ids.take_chunks(partition))  # a compacted changelog keeps the latest value of each key


@pytest.mark.parametrize("capacity", [1, CHUNK_IDS - 1, CHUNK_IDS, 2 * CHUNK_IDS + 7, 5000])
def test_a_restored_partition_knows_exactly_the_committed_window(capacity: int) -> None:
    rng = random.Random(capacity)
    original, table = RecentRecordIds(capacity), {}
    stream = [f"event:{rng.randrange(3 * capacity + 50)}" for _ in range(4 * capacity + 3 * CHUNK_IDS)]
    for n, record_id in enumerate(stream):
        original.first_time(0, 1, record_id)
        if rng.random() < 0.01 or n == len(stream) - 1:
            commit(original, table)
    assert len(table) <= original.slots  # the ring: old chunks are overwritten, not kept forever

    resumed = RecentRecordIds(capacity)
    resumed.restore(0, 2, table.values())
    # both remember the same ids: ask each about every id (first_time also records; compare copies)
    probes = sorted(set(stream)) + ["event:never-seen"]
    assert [resumed.first_time(0, 2, i) for i in probes] == [original.first_time(0, 1, i) for i in probes]


def test_ids_after_the_last_commit_are_not_restored() -> None:
    original, table = RecentRecordIds(100), {}
    original.first_time(0, 1, "event:committed")
    commit(original, table)
    original.first_time(0, 1, "event:in-flight")  # parsed, then the worker died before its commit
    resumed = RecentRecordIds(100)
    resumed.restore(0, 2, table.values())
    assert resumed.first_time(0, 2, "event:in-flight")  # read again after the crash: the original, not a copy
    assert not resumed.first_time(0, 2, "event:committed")


def test_a_resumed_partition_goes_on_numbering_its_chunks() -> None:
    original, table = RecentRecordIds(10 * CHUNK_IDS), {}
    for n in range(CHUNK_IDS + 5):
        original.first_time(0, 1, f"event:{n}")
    commit(original, table)
    resumed = RecentRecordIds(10 * CHUNK_IDS)
    resumed.restore(0, 2, table.values())
    resumed.first_time(0, 2, "event:next")
    commit(resumed, table)
    again = RecentRecordIds(10 * CHUNK_IDS)
    again.restore(0, 3, table.values())
    assert not again.first_time(0, 3, "event:0") and not again.first_time(0, 3, "event:next")


def test_in_memory_only_keeps_no_chunks() -> None:
    ids = RecentRecordIds(100, durable=False)
    assert ids.first_time(0, 1, "event:a") and not ids.first_time(0, 1, "event:a")
    assert ids.take_chunks(0) == []
