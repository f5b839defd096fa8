"""Durability and idempotence: the delivery log, the offset tracker and the per-integration workers.

The delivery log is a compacted Kafka topic written only inside Kafka transactions,
together with the alerts topic's consumer offsets. Records (key -> JSON value):

``f|<dedup_key>``
    a firing episode's latest alert (tombstoned on resolve): groups and inhibition
    survive a restart.
``p|<integration>|<dedup_key>``
    what the integration was last told about the episode (action, event time): replays
    of the alerts topic are not announced twice.
``n|<integration>|<notification_id>``
    a notification decided but not yet confirmed delivered (tombstoned once delivered
    or dead-lettered): after a crash it is delivered again *idempotently* — PagerDuty by
    its dedup_key, Slack by looking up the notification id in message metadata first,
    the JSONL file by looking for the id.
``r|<integration>|<group_key>``
    the group's open Slack message (channel, ts), for threading and the resolve update.

One transaction holds a flush's decisions (``p``, ``n``, ``f``) and the offsets of the
alerts they consumed, so a crash either keeps both or neither: no alert is lost and
none is decided twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from spendwatch.metrics import DEAD_LETTERS, PAGES_FAILED, PAGES_SENT
from spendwatch.schemas.alert import Action, Alert
from spendwatch.schemas.dead_letter import DeadLetter
from spendwatch.sinks.paging.config import RetryConfig
from spendwatch.sinks.paging.grouping import IntegrationSpec, Paged
from spendwatch.sinks.paging.notification import Notification
from spendwatch.sinks.paging.retry import DeliveryError, PermanentError, TransientError, retry_forever

log = logging.getLogger(__name__)

Record = tuple[str, dict[str, Any] | None]


class Integration(Protocol):
    spec: IntegrationSpec
    kind: str

    async def deliver(self, n: Notification, root: dict[str, Any] | None, recovering: bool) -> dict[str, Any] | None: ...

    async def close(self) -> None: ...


# -- records -------------------------------------------------------------------------------
def firing_record(dedup_key: str, alert: Alert | None) -> Record:
    return f"f|{dedup_key}", (alert.model_dump(mode="json") if alert is not None else None)


def paged_record(integration: str, dedup_key: str, paged: Paged) -> Record:
    return f"p|{integration}|{dedup_key}", {"integration": integration, "dedup_key": dedup_key,
                                            "action": paged.action.value, "fired_at": paged.fired_at.isoformat()}


def pending_record(n: Notification, done: bool = False) -> Record:
    return f"n|{n.integration}|{n.id}", (None if done else n.model_dump(mode="json"))


def root_record(integration: str, group_key: str, root: dict[str, Any] | None) -> Record:
    value = None if root is None else {"integration": integration, "group_key": group_key, **root}
    return f"r|{integration}|{group_key}", value


@dataclass
class LogState:
    """The delivery log replayed into memory."""

    firing: dict[str, Alert] = field(default_factory=dict)
    paged: dict[tuple[str, str], Paged] = field(default_factory=dict)
    pending: list[Notification] = field(default_factory=list)
    roots: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Mapping[str, dict[str, Any] | None]) -> LogState:
        state = cls()
        for key, value in records.items():
            if value is None:
                continue
            kind = key[:1]
            if kind == "f":
                alert = Alert.model_validate(value)
                state.firing[alert.dedup_key] = alert
            elif kind == "p":
                state.paged[(value["integration"], value["dedup_key"])] = Paged(
                    Action(value["action"]), datetime.fromisoformat(value["fired_at"]))
            elif kind == "n":
                state.pending.append(Notification.model_validate(value))
            elif kind == "r":
                root = {k: v for k, v in value.items() if k not in ("integration", "group_key")}
                state.roots[(value["integration"], value["group_key"])] = root
        state.pending.sort(key=lambda n: n.created_at)
        return state


# -- Kafka ---------------------------------------------------------------------------------
class DeliveryLog:
    """The compacted log topic, written transactionally together with consumer offsets."""

    def __init__(self, bootstrap_servers: str, topic: str, transactional_id: str, group_id: str, dead_letter_topic: str,
                 *, client_options: Mapping[str, Any] | None = None):
        self.bootstrap_servers = bootstrap_servers
        self.client_options = dict(client_options or {})
        self.topic = topic
        self.transactional_id = transactional_id
        self.group_id = group_id
        self.dead_letter_topic = dead_letter_topic
        self._producer = None
        self._lock = asyncio.Lock()

    async def start(self) -> LogState:
        """Fence any previous pager with our transactional id, then replay the log."""
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, transactional_id=self.transactional_id,
            enable_idempotence=True, acks="all", **self.client_options,
        )
        await self._producer.start()
        return LogState.from_records(await self._read_all())

    async def _read_all(self) -> dict[str, dict[str, Any] | None]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, isolation_level="read_committed",
                                    enable_auto_commit=False, auto_offset_reset="earliest", **self.client_options)
        await consumer.start()
        records: dict[str, dict[str, Any] | None] = {}
        try:
            await consumer.topics()  # refreshes metadata
            partitions = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or [])]
            if not partitions:
                return records
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for m in messages:
                        records[m.key.decode()] = json.loads(m.value) if m.value is not None else None
        finally:
            await consumer.stop()
        return records

    async def commit(self, records: Iterable[Record], offsets: Mapping[Any, int] | None = None,
                     dead_letters: Iterable[DeadLetter] = ()) -> None:
        """Write records, dead letters and consumer offsets atomically."""
        records, dead_letters = list(records), list(dead_letters)
        if not records and not offsets and not dead_letters:
            return
        async with self._lock:
            async with self._producer.transaction():
                for key, value in records:
                    await self._producer.send(self.topic, key=key.encode(),
                                              value=None if value is None else json.dumps(value).encode())
                for letter in dead_letters:
                    await self._producer.send(self.dead_letter_topic, value=letter.model_dump_json().encode())
                if offsets:
                    await self._producer.send_offsets_to_transaction(dict(offsets), self.group_id)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class OffsetTracker:
    """Which alert offsets may be committed: everything below the oldest alert still waiting in a group."""

    def __init__(self) -> None:
        self.in_flight: dict[Any, set[int]] = {}
        self.consumed: dict[Any, int] = {}
        self.committed: dict[Any, int] = {}

    def consumed_one(self, tp: Any, offset: int) -> None:
        self.in_flight.setdefault(tp, set()).add(offset)
        self.consumed[tp] = max(self.consumed.get(tp, -1), offset)

    def done(self, ref: Hashable) -> None:
        tp, offset = ref  # type: ignore[misc]
        self.in_flight.get(tp, set()).discard(offset)

    def committable(self) -> dict[Any, int]:
        out = {}
        for tp, last in self.consumed.items():
            waiting = self.in_flight.get(tp)
            position = min(waiting) if waiting else last + 1
            if position > self.committed.get(tp, -1):
                out[tp] = position
        return out

    def mark_committed(self, offsets: Mapping[Any, int]) -> None:
        self.committed.update(offsets)


# -- workers -------------------------------------------------------------------------------
class DeliveryWorker:
    """Delivers one integration's notifications in order; retries transient failures for ever."""

    def __init__(self, integration: Integration, delivery_log: DeliveryLog, roots: dict[tuple[str, str], dict[str, Any]],
                 retry: RetryConfig, dead_letter_source: str | None = None):
        self.integration = integration
        self.log = delivery_log
        self.roots = roots
        self.retry = retry
        self.dead_letter_source = dead_letter_source
        self.queue: asyncio.Queue[tuple[Notification, bool]] = asyncio.Queue()

    def submit(self, n: Notification, recovering: bool = False) -> None:
        self.queue.put_nowait((n, recovering))

    async def run(self) -> None:
        while True:
            n, recovering = await self.queue.get()
            await self.deliver_one(n, recovering)
            self.queue.task_done()

    async def deliver_one(self, n: Notification, recovering: bool) -> None:
        spec, kind = self.integration.spec, self.integration.kind
        root_key = (spec.id, n.group_key)
        state = {"recovering": recovering}

        async def attempt() -> dict[str, Any] | None:
            try:
                return await self.integration.deliver(n, self.roots.get(root_key), state["recovering"])
            except DeliveryError:
                raise
            except Exception as exc:  # noqa: BLE001 - an unforeseen failure must not drop the page or stop the others
                log.exception("%s: unexpected error delivering %s", spec.id, n.id)
                raise TransientError(f"unexpected {type(exc).__name__}: {exc}") from exc

        def on_retry(exc: TransientError, delay: float) -> None:
            state["recovering"] = True  # the failed call may have landed: look before posting again

        records: list[Record] = [pending_record(n, done=True)]
        dead: list[DeadLetter] = []
        try:
            root = await retry_forever(attempt, self.retry, f"{spec.id} notification {n.id}", on_retry)
        except PermanentError as exc:
            log.error("%s: notification %s dead-lettered: %s", spec.id, n.id, exc)
            PAGES_FAILED.labels(receiver=kind, reason=exc.error_type).inc()
            DEAD_LETTERS.labels(stage=kind, error_type=exc.error_type).inc()
            dead.append(DeadLetter.for_bytes(n.model_dump_json().encode(), reason=str(exc), error_type=exc.error_type,
                                             stage=kind, source_topic=self.dead_letter_source))
        else:
            PAGES_SENT.labels(receiver=kind).inc()
            if root != self.roots.get(root_key):
                records.append(root_record(spec.id, n.group_key, root))
            if root is None:
                self.roots.pop(root_key, None)
            else:
                self.roots[root_key] = root
        await self.log.commit(records, None, dead)
