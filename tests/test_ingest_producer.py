"""The ingest service's Kafka writer: a request is written whole or not at all (for read_committed
readers, i.e. the stream workers), and concurrent requests share transactions."""

from __future__ import annotations

import asyncio

import pytest
from ingest_support import read_topic

from spendwatch.broker import create_topics
from spendwatch.streams.ingest.config import IngestProducerConfig
from spendwatch.streams.ingest.producer import DurableProducer, KafkaUnavailable, Message

pytestmark = pytest.mark.kafka


async def test_a_failed_request_leaves_nothing_visible_and_the_producer_recovers(kafka_bootstrap, unique_prefix):
    topic = f"{unique_prefix}-raw"
    await create_topics(kafka_bootstrap, {topic: 2})
    config = IngestProducerConfig(max_request_size=65_536)
    producer = DurableProducer(kafka_bootstrap, config, transactional_id=f"{unique_prefix}-tx")
    await producer.start()
    try:
        good = [Message(topic, b'{"n": %d}' % i, b"key-%d" % i) for i in range(5)]
        with pytest.raises(KafkaUnavailable):
            await producer.send_all([*good, Message(topic, b"x" * 70_000, b"key-0")])
        assert await producer.send_all([Message(topic, b'{"n": "after"}', b"key-1")]) == 1
    finally:
        await producer.stop()
    assert [m.value for m in await read_topic(kafka_bootstrap, topic)] == [b'{"n": "after"}']


async def test_concurrent_requests_are_committed_together(kafka_bootstrap, unique_prefix):
    topic = f"{unique_prefix}-raw"
    await create_topics(kafka_bootstrap, {topic: 4})
    producer = DurableProducer(kafka_bootstrap, IngestProducerConfig(), transactional_id=f"{unique_prefix}-tx")
    await producer.start()
    commits = 0
    original = producer._commit

    async def counting(batch):
        nonlocal commits
        commits += 1
        await original(batch)

    producer._commit = counting
    try:
        requests = [[Message(topic, b"%d-%d" % (r, i), b"k%d" % i) for i in range(20)] for r in range(30)]
        written = await asyncio.gather(*(producer.send_all(batch) for batch in requests))
    finally:
        await producer.stop()
    assert written == [20] * 30
    assert 1 <= commits < 30, "requests arriving together share a transaction"
    assert len(await read_topic(kafka_bootstrap, topic)) == 600
