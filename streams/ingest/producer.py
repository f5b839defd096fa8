"""The durable Kafka writer behind every ingest request.

A request is answered 2xx only after :meth:`DurableProducer.send_all` returns, that is
after every partition leader has acknowledged every message with ``acks=all``. The
producer is idempotent, so its own retries never write a message twice.

Transactional mode (the default) also makes each request **atomic**: the messages of
concurrent requests are gathered into one Kafka transaction (group commit), committed
together, and only then are the requests answered. A request that fails, and a process
that dies mid-request, leave nothing visible to ``read_committed`` consumers (the stream
workers), so the sender's retry is counted once. The transactional id is stable per
instance (host and port), so a restarted instance fences its predecessor and aborts
whatever it left open at once rather than after ``transaction.timeout.ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from spendwatch.streams.partitioner import CachedDefaultPartitioner

from .config import IngestProducerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    value: bytes
    key: bytes | None = None


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time or refused the write; the sender should retry."""


def default_transactional_id(prefix: str, port: int) -> str:
    """``<prefix>-<host>-<port>``: stable across restarts of one instance, distinct between instances."""
    return f"{prefix}-{socket.gethostname()}-{port}"


class DurableProducer:
    """An ``acks=all``, idempotent (by default transactional) aiokafka producer.

    Parameters
    ----------
    bootstrap_servers
        ``host:port[,host:port]``.
    config
        Batching, compression, timeouts, transactions.
    transactional_id
        Required when ``config.transactional``; see :func:`default_transactional_id`.
    client_id
        Shown in the broker's logs and metrics.
    """

    def __init__(self, bootstrap_servers: str, config: IngestProducerConfig, transactional_id: str | None = None,
                 client_id: str = "spendwatch-ingest", client_options: Mapping[str, Any] | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_options = dict(client_options or {})
        self.config = config
        self.transactional_id = transactional_id
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self.connected = asyncio.Event()
        self._pending: list[tuple[list[Message], asyncio.Future[int]]] = []
        self._wakeup = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None

    def _new_producer(self) -> AIOKafkaProducer:
        c = self.config
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            transactional_id=self.transactional_id if c.transactional else None,
            transaction_timeout_ms=c.transaction_timeout_ms,
            linger_ms=c.linger_ms,
            max_batch_size=c.max_batch_size,
            max_request_size=c.max_request_size,
            compression_type=c.compression_type,
            request_timeout_ms=c.request_timeout_ms,
            partitioner=CachedDefaultPartitioner(),
            **self.client_options,
        )

    async def start(self) -> None:
        """Connect, retrying until Kafka answers (``/readyz`` stays 503 meanwhile)."""
        if self.config.transactional and not self.transactional_id:
            raise ValueError("a transactional producer needs a transactional_id")
        await self._connect()
        if self.config.transactional and self._committer is None:
            self._committer = asyncio.create_task(self._commit_loop(), name="ingest-group-commit")

    async def _connect(self) -> None:
        while True:
            producer = self._new_producer()
            try:
                await producer.start()
            except KafkaError as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                log.warning("Kafka at %s not reachable (%s); retrying in %.1fs",
                            self.bootstrap_servers, exc, self.config.connect_retry_s)
                await asyncio.sleep(self.config.connect_retry_s)
                continue
            self._producer = producer
            self.connected.set()
            log.info("connected to Kafka at %s%s", self.bootstrap_servers,
                     f" (transactional id {self.transactional_id})" if self.config.transactional else "")
            return

    async def _reconnect(self) -> None:
        """After a failed transaction: a new producer with the same id fences and aborts the old one."""
        self.connected.clear()
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
        await self._connect()

    async def stop(self) -> None:
        """Disconnect. Stop the HTTP server first: its requests wait for their commits, so none is pending here."""
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        for _, future in self._pending:
            if not future.done():
                future.set_exception(KafkaUnavailable("the ingest service is stopping"))
        self._pending = []
        producer, self._producer = self._producer, None
        self.connected.clear()
        if producer is not None:
            await producer.stop()

    async def send_all(self, messages: Iterable[Message]) -> int:
        """Write ``messages`` and wait until Kafka has acknowledged (and, transactional, committed) every one.

        Returns
        -------
        int
            How many messages were written.

        Raises
        ------
        KafkaUnavailable
            Not connected, the write failed, or it took longer than ``send_timeout_s``.
            Transactional: nothing of this call is visible to ``read_committed`` readers
            (unless the commit completed just as the timeout struck). Otherwise some
            messages may have been written.
        """
        batch = list(messages)
        # Transactional requests queue while the committer reconnects; the timeout bounds the wait.
        if (self._committer if self.config.transactional else self._producer) is None:
            raise KafkaUnavailable("not connected to Kafka yet")
        try:
            async with asyncio.timeout(self.config.send_timeout_s):
                if self.config.transactional:
                    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                    self._pending.append((batch, future))
                    self._wakeup.set()
                    return await asyncio.shield(future)
                futures = [await self._producer.send(m.topic, m.value, key=m.key) for m in batch]
                await asyncio.gather(*futures)
                return len(batch)
        except TimeoutError as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge within {self.config.send_timeout_s}s") from exc
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka refused the write: {exc}") from exc

    async def _commit_loop(self) -> None:
        """Group commit: everything queued while the previous transaction committed goes in the next."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._commit(batch)
                except asyncio.CancelledError:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(KafkaUnavailable("the ingest service is stopping"))
                    raise
                except Exception as exc:  # noqa: BLE001 - any failure aborts the batch; senders retry
                    log.warning("transaction of %d request(s) aborted: %s", len(batch), exc)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(KafkaUnavailable(f"Kafka transaction failed: {exc}"))
                    await self._reconnect()
                    continue
                for messages, future in batch:
                    if not future.done():
                        future.set_result(len(messages))

    async def _commit(self, batch: list[tuple[list[Message], asyncio.Future[int]]]) -> None:
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("not connected to Kafka")
        async with producer.transaction():
            futures = [await producer.send(m.topic, m.value, key=m.key) for messages, _ in batch for m in messages]
            if futures:
                await asyncio.gather(*futures)
