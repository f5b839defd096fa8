"""Batched produce (spendwatch.streams.produce) against the real broker, in a Kafka transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from spendwatch.broker import create_topics
from spendwatch.config import Settings
from spendwatch.streams.app import create_app
from spendwatch.streams.partitioner import CachedDefaultPartitioner, key_partition
from spendwatch.streams.pipeline import Output
from spendwatch.streams.produce import send_batches

pytestmark = pytest.mark.kafka

BATCH_BYTES = 2048


class _FaustProducer:
    """What send_batches reads of Faust's aiokafka Producer: its transactional producers and their locks."""

    def __init__(self, tid: str, producer: AIOKafkaProducer) -> None:
        self._transaction_producers = {tid: producer}
        self._trn_locks = {tid: asyncio.Lock()}

    def _ensure_producer(self) -> AIOKafkaProducer:  # pragma: no cover - only the transactional path is used
        raise AssertionError("a transactional send must use the transaction's producer")


async def _read(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple[int, bytes | None, bytes]]]:
    """partition -> [(offset, key, value)] of every committed record."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    out: dict[int, list[tuple[int, bytes | None, bytes]]] = defaultdict(list)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp]}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                out[tp.partition] += [(r.offset, r.key, r.value) for r in records]
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return out


async def _transaction(bootstrap: str, outputs: list[Output], *, commit: bool, compression: str | None = None) -> list:
    tid = f"test-produce-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid, enable_idempotence=True,
                                max_batch_size=BATCH_BYTES, partitioner=CachedDefaultPartitioner(),
                                compression_type=compression)
    await producer.start()
    try:
        await producer.begin_transaction()
        sent = await send_batches(_FaustProducer(tid, producer), outputs, tid)
        await asyncio.gather(*(batch.future for batch in sent))
        if commit:
            await producer.commit_transaction()
        else:
            await producer.abort_transaction()
    finally:
        await producer.stop()
    return sent


async def test_batches_keep_order_partitioning_and_offsets_within_the_transaction(kafka_bootstrap: str) -> None:
    prefix = uuid.uuid4().hex[:8]
    placed, keyed = f"{prefix}-placed", f"{prefix}-keyed"
    await create_topics(kafka_bootstrap, {placed: 3, keyed: 4})
    outputs = [Output(placed, None, f"p{i}".encode() * 20, i % 3) for i in range(120)]
    outputs += [Output(keyed, f"key:{i % 7}".encode(), f"k{i}".encode() * 20) for i in range(90)]
    outputs.append(Output(placed, None, b"x" * (BATCH_BYTES * 3), 1))  # larger than a whole batch

    sent = await _transaction(kafka_bootstrap, outputs, commit=True, compression="zstd")  # as the worker's producers

    assert sum(batch.records for batch in sent) == len(outputs)
    assert len(sent) > 3 + 4  # full batches rolled over to new ones
    placed_read = await _read(kafka_bootstrap, placed, 3)
    for partition in range(3):
        expected = [o.value for o in outputs if o.topic == placed and o.partition == partition]
        assert [value for _, _, value in placed_read[partition]] == expected
    keyed_read = await _read(kafka_bootstrap, keyed, 4)
    for partition, records in keyed_read.items():
        assert all(key_partition(key, 4) == partition for _, key, _ in records)
        expected = [o.value for o in outputs if o.topic == keyed and key_partition(o.key, 4) == partition]
        assert [value for _, _, value in records] == expected
    last = {(tp.topic, tp.partition): max(b.last_offset() for b in sent if b.future.result().topic_partition == tp)
            for tp in {b.future.result().topic_partition for b in sent}}
    for partition, records in placed_read.items():
        assert last[(placed, partition)] == records[-1][0]
    for partition, records in keyed_read.items():
        assert last[(keyed, partition)] == records[-1][0]


async def test_an_aborted_transaction_leaves_none_of_its_batches_visible(kafka_bootstrap: str) -> None:
    topic = f"{uuid.uuid4().hex[:8]}-aborted"
    await create_topics(kafka_bootstrap, {topic: 2})
    await _transaction(kafka_bootstrap, [Output(topic, None, b"v" * 100, i % 2) for i in range(60)], commit=False)
    await _transaction(kafka_bootstrap, [Output(topic, None, b"kept", 0)], commit=True)

    read = await _read(kafka_bootstrap, topic, 2)
    assert [value for _, _, value in read[0]] == [b"kept"] and not read.get(1)


@pytest.mark.parametrize(("setting", "expected"), [(None, "zstd"), ("lz4", "lz4"), ("none", None)])
def test_the_worker_producers_compress_as_configured(tmp_path, setting: str | None, expected: str | None) -> None:
    streams = {} if setting is None else {"compression_type": setting}
    settings = Settings.model_validate({"data_dir": str(tmp_path), "streams": streams})
    app = create_app(settings, bootstrap_servers="broker-1.example.com:9092", web_port=6066).app
    assert app.producer._settings_default()["compression_type"] == expected
