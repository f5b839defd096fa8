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
    """Stands in for :class:`~spendwatch.streams.ingest.producer.DurableProducer`: every send succeeds.

    ``hold``: when set, each send waits for it to be set (Kafka slow to acknowledge), and
    ``waiting`` counts the sends waiting.
    """

    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.messages: list[Message] = []
        self.connected = asyncio.Event()
        self.connected.set()
        self.hold = hold
        self.waiting = 0
        self.arrived = asyncio.Condition()

    async def send_all(self, messages: Iterable[Message]) -> None:
        if self.hold is not None:
            async with self.arrived:
                self.waiting += 1
                self.arrived.notify_all()
            await self.hold.wait()
        self.messages.extend(messages)

    async def wait_for_waiting(self, n: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: self.waiting >= n)


@dataclass
class OfflineIngest:
    url: str
    producer: RecordingProducer
    settings: Settings
    session: aiohttp.ClientSession = field(repr=False)
    service: IngestService | None = field(default=None, repr=False)

    def written(self, topic: str) -> list[bytes]:
        return [m.value for m in self.producer.messages if m.topic == topic]

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(v) for v in self.written(self.settings.kafka.topics.dead_letters)]

    def events(self) -> list[dict]:
        return [orjson.loads(v) for v in self.written(self.settings.kafka.topics.raw)]

    async def post(self, body: bytes, headers: dict[str, str] | None = None,
                   path: str = "/v1/events") -> tuple[int, dict | bytes]:
        status, answer, _ = await self.post_full(body, headers, path)
        return status, answer

    async def post_full(self, body: bytes, headers: dict[str, str] | None = None,
                        path: str = "/v1/events") -> tuple[int, dict | bytes, dict[str, str]]:
        async with self.session.post(self.url + path, data=body, headers=headers or {}) as resp:
            raw = await resp.read()
            try:
                return resp.status, orjson.loads(raw), dict(resp.headers)
            except orjson.JSONDecodeError:
                return resp.status, raw, dict(resp.headers)


def offline_settings(**ingest: object) -> Settings:
    return Settings(ingest=IngestConfig(port=0, allow_unauthenticated=True, **ingest))


@contextlib.asynccontextmanager
async def offline_ingest(settings: Settings | None = None, tokens: dict[str, str] | None = None,
                         producer: RecordingProducer | None = None) -> AsyncIterator[OfflineIngest]:
    """The ingest application on a free loopback port, writing to a :class:`RecordingProducer`."""
    settings = settings or offline_settings()
    producer = producer or RecordingProducer()
    service = IngestService(settings, producer, GatewayTokens(tokens) if tokens else None)  # type: ignore[arg-type]
    runner, port = await serve(service, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield OfflineIngest(f"http://127.0.0.1:{port}", producer, settings, session, service)
    finally:
        await runner.cleanup()
