"""The ClickHouse sink: events, outcomes and alerts topics -> ClickHouse, exactly once.

Runs standalone (``spendwatch sink``) or inside another asyncio process
(``await ClickHouseSink(settings).run()``, or ``start()`` / ``stop()``). With embedded chDB
only one process may open the data directory, so the process that owns chDB runs the sink.

Exactly once across crashes
---------------------------
Each row stores its Kafka (topic, partition, offset). Offsets are committed to the sink's
consumer group only after the rows are in ClickHouse. When a partition is assigned, the sink
asks ClickHouse which offsets at or after the committed one it already holds (written by a
predecessor that died before committing) and skips exactly those while it re-reads; rollups
are materialized views fed by the raw insert, so they see each record once too. Retries of
one batch reuse its deduplication token (see :mod:`.writer`), so a retried insert that did
land is not counted twice.

Never blocking the detectors
----------------------------
The sink has its own consumer group: the detectors never wait on it. Rows wait in a bounded
buffer; when it holds ``buffer_max_rows`` the sink pauses its partitions (Kafka keeps the
rest) and resumes once ClickHouse has caught up to half of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from clickhouse_connect.driver.client import Client
from pydantic import ValidationError

from spendwatch.kafka_security import client_options
from spendwatch.metrics import CLICKHOUSE_BACKLOG, CONSUMER_LAG, DEAD_LETTERS
from spendwatch.schemas.dead_letter import DeadLetter
from spendwatch.schemas.redact import redact_bytes

from . import rows as R
from .client import get_client
from .migrate import migrate
from .writer import ClickHouseWriter, OffsetRange, parse_batch_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Route:
    table: R.TableSpec
    parse: Callable[[bytes], Any]
    to_row: Callable[..., tuple[Any, ...]]


@dataclass
class _Batch:
    """Rows accepted since the last flush, and the offsets to commit once they are written."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    first: dict[TopicPartition, int] = field(default_factory=dict)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    count: int = 0

    def ranges(self, topic: str) -> list[OffsetRange]:
        return [(tp.topic, tp.partition, lo, self.next_offsets[tp] - 1) for tp, lo in self.first.items() if tp.topic == topic]


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, sink: ClickHouseSink):
        self._sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._sink._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._sink._on_assigned(assigned)


class ClickHouseSink:
    """Consume the events, outcomes and alerts topics and write them to ClickHouse.

    Parameters
    ----------
    settings
        spendwatch :class:`~spendwatch.config.Settings` (kafka, clickhouse, data_dir).
    bootstrap_servers
        Overrides ``settings.kafka.bootstrap_servers`` (an embedding process that started the
        embedded broker passes its address).
    client_factory
        Opens the ClickHouse client; default :func:`~.client.get_client` on the settings.
    """

    def __init__(self, settings: Any, *, bootstrap_servers: str | None = None,
                 client_factory: Callable[[], Client] | None = None):
        from spendwatch import broker_quirks

        self.settings = settings
        self.config = settings.clickhouse
        broker_quirks.apply(settings.kafka.broker)
        self.bootstrap_servers = bootstrap_servers or settings.kafka.bootstrap_servers
        self.client_options = client_options(settings.kafka.security)
        if not self.bootstrap_servers:
            raise ValueError("the ClickHouse sink needs kafka.bootstrap_servers (or bootstrap_servers=...)")
        topics = settings.kafka.topics
        self.routes: dict[str, _Route] = {
            topics.events: _Route(R.EVENTS, R.parse_event, R.event_row),
            topics.outcomes: _Route(R.OUTCOMES, R.parse_outcome, R.outcome_row),
            topics.alerts: _Route(R.ALERTS, R.parse_alert, R.alert_row),
        }
        self.dead_letter_topic = topics.dead_letters
        self.writer = ClickHouseWriter(
            client_factory or (lambda: get_client(self.config, settings.data_dir)), self.config)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._pending = _Batch()
        self._inflight_rows = 0
        self._owned: set[TopicPartition] = set()
        self._rebalancing = False
        self._skip: dict[TopicPartition, set[int]] = {}
        self._flush_lock = asyncio.Lock()
        self._flush_now = asyncio.Event()
        self._stopping = asyncio.Event()
        self._progress = asyncio.Condition()
        self._tasks: list[asyncio.Task] = []
        self.rows_written = 0
        self.records_skipped = 0
        self.batches_completed = 0
        self.paused = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate (if configured), join the consumer group and start consuming and flushing."""
        if self.config.migrate_on_start:
            await self.writer.call(lambda c: migrate(c, self.config))
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            **self.client_options,
            group_id=self.config.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # never store records of aborted transactions
        )
        if self.uses_group_assignment:
            self._consumer.subscribe(list(self.routes), listener=_Rebalance(self))
            await self._consumer.start()
        else:
            await self._consumer.start()
            partitions = await self._all_partitions()
            self._consumer.assign(list(partitions))
            await self._on_assigned(partitions)
        log.info("ClickHouse sink consuming %s as group %s (%s) into %s", ", ".join(self.routes),
                 self.config.consumer_group, "group-assigned" if self.uses_group_assignment else "all partitions",
                 self.config.url or f"chDB in {self.settings.data_dir}")
        self._tasks = [asyncio.create_task(self._consume_loop(), name="clickhouse-sink-consume"),
                       asyncio.create_task(self._flush_loop(), name="clickhouse-sink-flush")]

    async def stop(self) -> None:
        """Stop consuming, write everything buffered, commit, and close.

        If ClickHouse is still failing after ``shutdown_timeout_s``, the buffered rows are
        abandoned uncommitted: the next start re-reads them from Kafka (nothing is lost).
        """
        self._stopping.set()
        self._flush_now.set()
        try:
            async with asyncio.timeout(self.config.shutdown_timeout_s):
                await asyncio.gather(*self._tasks, return_exceptions=True)  # run() reports their failures
                await self.flush()
        except TimeoutError:
            log.warning("ClickHouse did not take the last %d buffered rows within %.0fs; they stay in Kafka "
                        "uncommitted and are written after the next start", self.buffered_rows,
                        self.config.shutdown_timeout_s)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self.writer.close()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop cleanly (safe from a signal handler)."""
        self._stopping.set()
        self._flush_now.set()

    async def run(self) -> None:
        """Start, run until cancelled or :meth:`stop` is called, then stop cleanly."""
        await self.start()
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait([stopping, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # a broken consumer or flusher ends the service loudly
        finally:
            stopping.cancel()
            await self.stop()

    @property
    def uses_group_assignment(self) -> bool:
        """Whether partitions are balanced by the consumer group, or all taken by this one sink.

        ``auto``: one sink takes every partition on embedded chDB (only one process can open it,
        and a restart then resumes at once instead of waiting out the dead member's session);
        the group balances several sinks against a ClickHouse server.
        """
        if self.config.partition_assignment == "auto":
            return self.config.url is not None
        return self.config.partition_assignment == "group"

    async def _all_partitions(self) -> set[TopicPartition]:
        consumer = self._consumer
        assert consumer is not None
        deadline = time.monotonic() + self.config.topic_wait_s
        while True:
            await consumer.topics()  # refreshes metadata
            found = {t: consumer.partitions_for_topic(t) for t in self.routes}
            missing = [t for t, parts in found.items() if not parts]
            if not missing:
                return {TopicPartition(t, p) for t, parts in found.items() for p in parts}
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics {missing} do not exist (create them, e.g. by starting the worker)")
            await asyncio.sleep(0.5)

    # -- observation (tests, embedding processes) -------------------------------------------

    async def wait_for(self, predicate: Callable[[ClickHouseSink], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds after a flush (e.g. ``lambda s: s.rows_written >= n``)."""
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: predicate(self)), timeout)

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query on the sink's own client (the only one allowed on an embedded chDB)."""
        return await self.writer.query(sql, parameters)

    async def caught_up(self) -> bool:
        """Whether every record in the topics up to now (their committed end) is written and committed."""
        consumer = self._consumer
        if consumer is None or not self._owned or self._rebalancing or self._pending.next_offsets \
                or self._flush_lock.locked():
            return False
        owned = sorted(self._owned)
        ends = await consumer.end_offsets(owned)  # the last stable offsets: read_committed
        return all([await consumer.position(tp) >= ends[tp] for tp in owned]) and not self._pending.next_offsets

    async def wait_caught_up(self, timeout: float) -> None:
        """Wait until :meth:`caught_up` (e.g. after producing, before reading ClickHouse)."""
        async with asyncio.timeout(timeout):
            while not await self.caught_up():
                self._flush_now.set()
                async with self._progress:  # woken by each flush; re-checked at least every 0.2 s
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._progress.wait(), 0.2)

    @property
    def buffered_rows(self) -> int:
        return self._pending.count + self._inflight_rows

    # -- consuming ---------------------------------------------------------------------------

    async def _consume_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        last_lag = 0.0
        while not self._stopping.is_set():
            self._apply_backpressure(consumer)
            batches = await consumer.getmany(timeout_ms=200, max_records=self.config.batch_max_rows)
            for tp, records in batches.items():
                for record in records:
                    self._accept(tp, record)
            if self._pending.count >= self.config.batch_max_rows:
                self._flush_now.set()
            CLICKHOUSE_BACKLOG.set(self.buffered_rows)
            if time.monotonic() - last_lag > 5:
                last_lag = time.monotonic()
                await self._report_lag(consumer)

    def _apply_backpressure(self, consumer: AIOKafkaConsumer) -> None:
        if self.buffered_rows >= self.config.buffer_max_rows:
            if not self.paused:
                log.warning("ClickHouse is behind (%d rows buffered): pausing consumption", self.buffered_rows)
            self.paused = True
            consumer.pause(*consumer.assignment())  # again each round: covers newly assigned partitions
        elif self.paused and self.buffered_rows <= self.config.buffer_max_rows // 2:
            consumer.resume(*consumer.paused())
            self.paused = False
            log.info("ClickHouse caught up: resuming consumption")

    def _accept(self, tp: TopicPartition, record: Any) -> None:
        if self._rebalancing or tp not in self._owned:
            return  # fetched across a rebalance: re-read from the position set when it completes
        batch = self._pending
        batch.first.setdefault(tp, record.offset)
        batch.next_offsets[tp] = record.offset + 1
        skip = self._skip.get(tp)
        if skip is not None and record.offset in skip:
            skip.discard(record.offset)
            if not skip:
                del self._skip[tp]
            self.records_skipped += 1
            return
        route = self.routes[tp.topic]
        try:
            row = route.to_row(route.parse(record.value), tp.topic, tp.partition, record.offset)
        except Exception as exc:  # noqa: BLE001 - one bad record never stops the sink: it is dead-lettered
            error_type = "validation" if isinstance(exc, (ValidationError, ValueError)) else type(exc).__name__
            # the original redacted, and a pydantic error without the input values it would quote (prompt text)
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(
                include_url=False, include_context=False, include_input=False)) if isinstance(exc, ValidationError) else exc
            batch.dead_letters.append(DeadLetter.for_bytes(
                redact_bytes(record.value or b"")[0], reason=f"not a valid {route.table.name} record: {detail}"[:2000],
                error_type=error_type, stage="clickhouse", source_topic=tp.topic,
                source_partition=tp.partition, source_offset=record.offset))
            return
        batch.rows.setdefault(route.table.name, []).append(row)
        batch.count += 1

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            with contextlib.suppress(Exception):
                lag = high - await consumer.position(tp)  # not yet fetched; buffered rows: CLICKHOUSE_BACKLOG
                CONSUMER_LAG.labels(self.config.consumer_group, tp.topic, str(tp.partition)).set(max(lag, 0))

    # -- writing -----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.config.flush_interval_s)
            self._flush_now.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything buffered (retrying until ClickHouse takes it), then commit its offsets."""
        async with self._flush_lock:
            batch, self._pending = self._pending, _Batch()
            if not batch.next_offsets:
                return
            self._inflight_rows = batch.count
            for topic, route in self.routes.items():
                rows = batch.rows.get(route.table.name)
                if rows:
                    await self.writer.insert(route.table, rows, batch.ranges(topic))
            if batch.dead_letters:
                await self._send_dead_letters(batch.dead_letters)
            await self._commit(batch.next_offsets)
            self._inflight_rows = 0
            self.rows_written += batch.count
            CLICKHOUSE_BACKLOG.set(self.buffered_rows)
        async with self._progress:
            self._progress.notify_all()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self._consumer is None:
            return
        owned = {tp: OffsetAndMetadata(o, "") for tp, o in offsets.items() if tp in self._owned}
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
        except Exception as exc:  # noqa: BLE001 - the rows are in ClickHouse; the next owner skips them
            log.warning("committing sink offsets failed (%s); they will be skipped by offset on restart", exc)

    async def _send_dead_letters(self, letters: list[DeadLetter]) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all", **self.client_options)
            await self._producer.start()
        for letter in letters:
            await self._producer.send_and_wait(self.dead_letter_topic, letter.model_dump_json().encode())
            DEAD_LETTERS.labels(letter.stage, letter.error_type).inc()

    # -- rebalancing -------------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._rebalancing = True
        await self.flush()  # commit what we own before anyone else reads it
        self._owned -= set(revoked)
        for tp in revoked:
            self._skip.pop(tp, None)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Position each new partition exactly after what ClickHouse holds, and note what to skip."""
        consumer = self._consumer
        assert consumer is not None
        self._rebalancing = True  # records fetched meanwhile are dropped, then re-read after the seeks below
        try:
            await self._complete_unfinished_batches(consumer, assigned)
            positions = {tp: await self._resume_offset(consumer, tp) for tp in assigned}
            for tp, offset in positions.items():  # no await from here on: no fetch lands in between
                consumer.seek(tp, offset)
                self._owned.add(tp)
        finally:
            self._rebalancing = False

    async def _complete_unfinished_batches(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """Re-insert, with their original deduplication tokens, the batches a crashed predecessor
        wrote (wholly or partly) but never committed.

        ClickHouse drops every part of such a batch that did land and writes the ones that did
        not -- in the raw table and in the materialized views it feeds -- so the rollups are
        exact even after a crash in the middle of one insert.
        """
        for topic, route in self.routes.items():
            table = route.table.name
            specs: set[str] = set()
            for tp in sorted(tp for tp in assigned if tp.topic == topic):
                # Inserts run one at a time and retry until they succeed, so only the last batch
                # written for a partition can be unfinished.
                committed = await consumer.committed(tp)
                last = await self.writer.query(
                    f"SELECT kafka_batch, inserted_at >= now64(3) - INTERVAL 1 DAY FROM {table} "
                    "WHERE kafka_topic = {t:String} AND kafka_partition = {p:UInt32} AND kafka_offset >= {o:UInt64} "
                    "AND kafka_batch != '' ORDER BY kafka_offset DESC LIMIT 1",
                    {"t": tp.topic, "p": tp.partition, "o": committed or 0})
                # Without a group offset, only a recent batch (a sink that died before its first
                # commit) is replayed: an old one may be outside the deduplication window.
                if last and (committed is not None or last[0][1]):
                    specs.add(last[0][0])
            for spec in sorted(specs):
                ranges = parse_batch_spec(spec)
                if not all(TopicPartition(t, p) in assigned for t, p, _, _ in ranges):
                    log.warning("unfinished batch %s spans partitions this sink does not own; its owner completes it",
                                spec)
                    continue
                rows = await self._reread(route, ranges, spec)
                await self.writer.insert(route.table, rows, ranges)
                self.batches_completed += 1
                log.info("completed the unfinished batch %s (%d rows) with its original token", spec, len(rows))

    async def _reread(self, route: _Route, ranges: list[OffsetRange], spec: str) -> list[tuple[Any, ...]]:
        """The rows of one earlier batch, rebuilt from Kafka exactly as it was written."""
        table = route.table.name
        written_elsewhere: dict[int, set[int]] = {}
        for topic, partition, lo, hi in ranges:  # records an even earlier batch holds were not in this one
            rows = await self.writer.query(
                f"SELECT kafka_offset FROM {table} WHERE kafka_topic = {{t:String}} AND kafka_partition = {{p:UInt32}} "
                "AND kafka_offset BETWEEN {lo:UInt64} AND {hi:UInt64} AND kafka_batch != {spec:String}",
                {"t": topic, "p": partition, "lo": lo, "hi": hi, "spec": spec})
            written_elsewhere[partition] = {int(r[0]) for r in rows}
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                  isolation_level="read_committed", **self.client_options)
        await reader.start()
        try:
            tps = {TopicPartition(t, p): (lo, hi) for t, p, lo, hi in ranges}
            reader.assign(list(tps))
            for tp, (lo, _) in tps.items():
                reader.seek(tp, lo)
            out: list[tuple[Any, ...]] = []
            remaining = set(tps)
            async with asyncio.timeout(self.config.topic_wait_s):
                while remaining:
                    for tp, records in (await reader.getmany(*remaining, timeout_ms=500)).items():
                        lo, hi = tps[tp]
                        for record in records:
                            if record.offset > hi:
                                break
                            if record.offset in written_elsewhere[tp.partition]:
                                continue
                            with contextlib.suppress(Exception):  # dead letters: re-sent by the normal path
                                out.append(route.to_row(route.parse(record.value), tp.topic, tp.partition,
                                                        record.offset))
                        if records and (records[-1].offset >= hi or await reader.position(tp) > hi):
                            remaining.discard(tp)
                    for tp in list(remaining):
                        if await reader.position(tp) > tps[tp][1]:
                            remaining.discard(tp)
            return out
        finally:
            await reader.stop()

    async def _resume_offset(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
        table = self.routes[tp.topic].table.name
        params = {"t": tp.topic, "p": tp.partition}
        committed = await consumer.committed(tp)
        if committed is None:
            # No group offset (first start, or it expired): continue after what ClickHouse holds.
            [(max_offset, count)] = await self.writer.query(
                f"SELECT max(kafka_offset), count() FROM {table} "
                "WHERE kafka_topic = {t:String} AND kafka_partition = {p:UInt32}", params)
            if count:
                return int(max_offset) + 1
            return (await consumer.beginning_offsets([tp]))[tp]
        # Records a crashed predecessor wrote but never committed: skip exactly those.
        present = await self.writer.query(
            f"SELECT DISTINCT kafka_offset FROM {table} WHERE kafka_topic = {{t:String}} "
            "AND kafka_partition = {p:UInt32} AND kafka_offset >= {o:UInt64}", {**params, "o": committed})
        if present:
            self._skip[tp] = {int(r[0]) for r in present}
            log.info("%s: %d records after the committed offset %d are already in ClickHouse; skipping them",
                     tp, len(present), committed)
        return committed
