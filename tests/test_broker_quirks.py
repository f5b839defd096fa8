"""The noida-db workaround: a read_committed consumer keeps a producer's batches after its fenced transaction.

noida-db lists long-aborted transactions in every fetch response; without
:mod:`spendwatch.broker_quirks` aiokafka then skips the committed batches a restarted
producer (same transactional id, same producer id) writes after the abort.
"""

from __future__ import annotations

import asyncio

import pytest

from spendwatch import broker_quirks

pytestmark = pytest.mark.kafka


async def _fence_then_follow(bootstrap: str, topic: str) -> tuple[list[bytes], list[bytes]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    follower = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level="read_committed",
                                group_id=None, auto_offset_reset="earliest")
    await follower.start()
    seen: list[bytes] = []
    try:
        killed = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
        await killed.start()
        await killed.begin_transaction()
        await killed.send_and_wait(topic, b"committed-1")
        await killed.commit_transaction()
        await killed.begin_transaction()
        await killed.send_and_wait(topic, b"aborted")
        for records in (await follower.getmany(timeout_ms=1000)).values():  # the follower waits at the open txn
            seen += [r.value for r in records]
        # the process dies with the transaction open; its successor (same transactional id) fences it
        await killed.stop()
        successor = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
        await successor.start()
        for value in (b"committed-2", b"committed-3"):
            await successor.begin_transaction()
            await successor.send_and_wait(topic, value)
            await successor.commit_transaction()
        await successor.stop()
        tp = TopicPartition(topic, 0)
        end = (await follower.end_offsets([tp]))[tp]
        while await follower.position(tp) < end:
            for records in (await follower.getmany(timeout_ms=500)).values():
                seen += [r.value for r in records]
        # a reader that starts after the abort marker
        late = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", group_id=None)
        await late.start()
        late.assign([tp])
        late.seek(tp, end - 4)  # just after the abort marker: committed-2 and committed-3, each batch + marker
        late_seen: list[bytes] = []
        while await late.position(tp) < end:
            for records in (await late.getmany(timeout_ms=500)).values():
                late_seen += [r.value for r in records]
        await late.stop()
    finally:
        await follower.stop()
    return seen, late_seen


def test_readers_keep_a_fenced_producers_later_commits(kafka_bootstrap, make_topics, unique_prefix) -> None:
    broker_quirks.install_stale_abort_filter()  # what kafka.broker: noida-db (or the embedded broker) installs
    topic = f"{unique_prefix}-quirks"
    make_topics({topic: 1})
    seen, late_seen = asyncio.run(_fence_then_follow(kafka_bootstrap, topic))
    assert seen == [b"committed-1", b"committed-2", b"committed-3"]
    assert late_seen == [b"committed-2", b"committed-3"]
