"""The local RocksDB store checked against the changelog at start-up: ahead of it is discarded, not a crash loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from spendwatch.config import Settings
from spendwatch.streams.app import create_app
from spendwatch.streams.local_state import changelog_ends, discard_state_ahead_of_changelog

from streams_kit import isolated_pipeline


async def fill(bootstrap: str, topic: str, partitions: tuple[int, ...], records: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition in partitions:
            for n in range(records):
                await producer.send_and_wait(topic, b"v", key=f"k{n}".encode(), partition=partition)
    finally:
        await producer.stop()

pytestmark = pytest.mark.kafka

# Faust itself records the offsets (its public store API), in another process that then exits and closes the store
WRITE_OFFSETS = """
import sys
from faust.types import TP
from spendwatch.config import load_settings
from spendwatch.streams.app import create_app
streams = create_app(load_settings(sys.argv[1]), bootstrap_servers="127.0.0.1:1", web_port=1)
store = streams.state.data
for partition, offset in ((0, 5), (1, 1), (2, 2)):
    store.set_persisted_offset(TP(streams.changelog_topic, partition), offset)
"""


def test_a_partition_ahead_of_the_changelog_is_discarded_the_others_kept(kafka_bootstrap, tmp_path) -> None:
    pipe = isolated_pipeline(kafka_bootstrap, tmp_path, partitions=3, store="rocksdb://")
    asyncio.run(fill(kafka_bootstrap, pipe["changelog"], partitions=(1, 2), records=3))  # committed end offset 3
    subprocess.run([sys.executable, "-c", WRITE_OFFSETS, str(pipe["config"])], check=True)
    from spendwatch.config import load_settings

    streams = create_app(load_settings(pipe["config"]), bootstrap_servers=kafka_bootstrap, web_port=1)
    ends = asyncio.run(changelog_ends(kafka_bootstrap, pipe["changelog"], 3))
    paths = {p: streams.state.data.partition_path(p) for p in range(3)}
    assert all(path.exists() for path in paths.values())
    # partition 0: the store says offset 5, the changelog is empty; 1 and 2 lie within theirs
    assert ends == {0: 0, 1: 3, 2: 3}
    assert discard_state_ahead_of_changelog(streams, ends) == [0]
    assert not paths[0].exists() and paths[1].exists() and paths[2].exists()
    assert discard_state_ahead_of_changelog(streams, ends) == []
