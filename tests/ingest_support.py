"""Helpers shared by the ingest tests (tests/test_ingest_*.py): a running ingest service on
unique topics of the session broker, and reading back what it wrote."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from spendwatch.broker import create_topics
from spendwatch.config import Settings
from spendwatch.streams.config import KafkaConfig, TopicsConfig
from spendwatch.streams.ingest.auth import GatewayTokens
from spendwatch.streams.ingest.config import IngestConfig
from spendwatch.streams.ingest.server import RunningIngest, start_ingest

LITELLM_TOKEN = "tok-litellm-0123456789"
OTEL_TOKEN = "tok-otel-abcdefghij"
TOKENS = {"gw-litellm": LITELLM_TOKEN, "gw-otel": OTEL_TOKEN}


def ingest_settings(bootstrap: str, prefix: str, partitions: int = 3, **ingest: object) -> Settings:
    topics = TopicsConfig(
        raw=f"{prefix}-raw", events=f"{prefix}-events", outcomes=f"{prefix}-outcomes",
        alerts=f"{prefix}-alerts", dead_letters=f"{prefix}-dead-letters",
    )
    settings = Settings(
        kafka=KafkaConfig(bootstrap_servers=bootstrap, topics=topics),
        ingest=IngestConfig(port=0, **ingest),
    )
    return settings.model_copy(update={"streams": settings.streams.model_copy(update={"partitions": partitions})})


@contextlib.asynccontextmanager
async def running_ingest(
    settings: Settings, tokens: dict[str, str] | None = TOKENS, *, create: bool = True,
) -> AsyncIterator[RunningIngest]:
    """The ingest service on a free loopback port, writing to ``settings``' topics."""
    bootstrap = settings.kafka.bootstrap_servers
    assert bootstrap
    if create:
        topics = settings.kafka.topics
        await create_topics(bootstrap, {topics.raw: settings.streams.partitions, topics.dead_letters: 1})
    running = await start_ingest(settings, bootstrap, GatewayTokens(tokens) if tokens is not None else None)
    try:
        yield running
    finally:
        await running.stop()


async def read_topic(bootstrap: str, topic: str, at_least: int = 0, timeout: float = 20.0) -> list:
    """Every message in ``topic`` up to its current end (and at least ``at_least`` of them).

    The ingest service answers only after Kafka acknowledged, so after a response the end
    offsets already include everything it wrote: no waiting on time.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed")  # what the stream workers see
    await consumer.start()
    try:
        await consumer.topics()  # fetches cluster metadata
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topic {topic} does not exist"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        messages: list = []
        async with asyncio.timeout(timeout):
            while True:
                end = await consumer.end_offsets(partitions)
                positions = [await consumer.position(tp) for tp in partitions]
                if sum(end.values()) >= at_least and all(pos >= end[tp] for pos, tp in zip(positions, partitions)):
                    break
                batch = await consumer.getmany(*partitions, timeout_ms=200)
                for records in batch.values():
                    messages.extend(records)
        return messages
    finally:
        await consumer.stop()


def values(messages: list) -> list[dict]:
    return [orjson.loads(m.value) for m in messages]


def canonical_event(i: int, **overrides: object) -> dict:
    """A canonical GatewayEvent as a gateway writing spendwatch's own format would send it."""
    event = {
        "event_id": f"evt-{i}", "event_time": "2026-11-20T10:00:00Z", "gateway": "custom",
        "api_key_hash": f"key-{i % 3}", "user": f"user-{i % 2}", "team": "team-a", "session_id": f"sess-{i % 4}",
        "model": "gpt-4o-mini", "input_tokens": 1000 + i, "output_tokens": 100, "cost_usd": "0.0012",
    }
    event.update(overrides)
    return event
