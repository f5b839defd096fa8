"""The ingest HTTP service without Kafka: a producer that records what would be written.

For tests of what ingest answers and what it would write (statuses, dead letters, metrics,
limits, logs) that need no broker; the durability tests use tests/ingest_support.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import aiohttp
import orjson

from spendwatch.config import Settings
from spendwatch.schemas.dead_letter import DeadLetter
from spendwatch.streams.ingest.auth import GatewayTokens
from spendwatch.streams.ingest.config import IngestConfig
from spendwatch.streams.ingest.producer import Message
from spendwatch.streams.ingest.server import IngestService, serve


class RecordingProducer:
    """Stands in for :class:`~spendwatch.streams.ingest.producer.DurableProducer`: every send succeeds."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.connected = asyncio.Event()
        self.connected.set()

    async def send_all(self, messages: Iterable[Message]) -> None:
        self.messages.extend(messages)


@dataclass
class OfflineIngest:
    url: str
    producer: RecordingProducer
    settings: Settings
    session: aiohttp.ClientSession = field(repr=False)

    def written(self, topic: str) -> list[bytes]:
        return [m.value for m in self.producer.messages if m.topic == topic]

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(v) for v in self.written(self.settings.kafka.topics.dead_letters)]

    def events(self) -> list[dict]:
        return [orjson.loads(v) for v in self.written(self.settings.kafka.topics.raw)]

    async def post(self, body: bytes, headers: dict[str, str] | None = None,
                   path: str = "/v1/events") -> tuple[int, dict | bytes]:
        async with self.session.post(self.url + path, data=body, headers=headers or {}) as resp:
            raw = await resp.read()
            try:
                return resp.status, orjson.loads(raw)
            except orjson.JSONDecodeError:
                return resp.status, raw


def offline_settings(**ingest: object) -> Settings:
    return Settings(ingest=IngestConfig(port=0, allow_unauthenticated=True, **ingest))


@contextlib.asynccontextmanager
async def offline_ingest(settings: Settings | None = None,
                         tokens: dict[str, str] | None = None) -> AsyncIterator[OfflineIngest]:
    """The ingest application on a free loopback port, writing to a :class:`RecordingProducer`."""
    settings = settings or offline_settings()
    producer = RecordingProducer()
    service = IngestService(settings, producer, GatewayTokens(tokens) if tokens else None)  # type: ignore[arg-type]
    runner, port = await serve(service, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield OfflineIngest(f"http://127.0.0.1:{port}", producer, settings, session)
    finally:
        await runner.cleanup()
