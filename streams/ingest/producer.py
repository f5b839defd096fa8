"""The durable Kafka writer behind every ingest request.

A request is answered 2xx only after :meth:`DurableProducer.send_all` returns, that is
after every partition leader has acknowledged every message with ``acks=all``. The
producer is idempotent, so its own retries never write a message twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from .config import IngestProducerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    value: bytes
    key: bytes | None = None


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time or refused the write; the sender should retry."""


class DurableProducer:
    """An ``acks=all``, idempotent aiokafka producer that reports per-request durability.

    Parameters
    ----------
    bootstrap_servers
        ``host:port[,host:port]``.
    config
        Batching, compression and timeouts.
    client_id
        Shown in the broker's logs and metrics.
    """

    def __init__(self, bootstrap_servers: str, config: IngestProducerConfig, client_id: str = "spendwatch-ingest") -> None:
        self.bootstrap_servers = bootstrap_servers
        self.config = config
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self.connected = asyncio.Event()

    def _new_producer(self) -> AIOKafkaProducer:
        c = self.config
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=c.linger_ms,
            max_batch_size=c.max_batch_size,
            max_request_size=c.max_request_size,
            compression_type=c.compression_type,
            request_timeout_ms=c.request_timeout_ms,
        )

    async def start(self) -> None:
        """Connect, retrying until Kafka answers (``/readyz`` stays 503 meanwhile)."""
        while True:
            producer = self._new_producer()
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                log.warning("Kafka at %s not reachable (%s); retrying in %.1fs",
                            self.bootstrap_servers, exc, self.config.connect_retry_s)
                await asyncio.sleep(self.config.connect_retry_s)
                continue
            self._producer = producer
            self.connected.set()
            log.info("connected to Kafka at %s", self.bootstrap_servers)
            return

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        producer, self._producer = self._producer, None
        self.connected.clear()
        if producer is not None:
            await producer.stop()

    async def send_all(self, messages: Iterable[Message]) -> int:
        """Write ``messages`` and wait until Kafka has acknowledged every one.

        Returns
        -------
        int
            How many messages were written.

        Raises
        ------
        KafkaUnavailable
            Not connected, a write failed, or acknowledgements took longer than
            ``send_timeout_s``. Some messages may have been written: senders retry,
            and downstream deduplicates by ``event_id``.
        """
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("not connected to Kafka yet")
        try:
            async with asyncio.timeout(self.config.send_timeout_s):
                futures = [await producer.send(m.topic, m.value, key=m.key) for m in messages]
                if futures:
                    await asyncio.gather(*futures)
        except TimeoutError as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge within {self.config.send_timeout_s}s") from exc
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka refused the write: {exc}") from exc
        return len(futures)
