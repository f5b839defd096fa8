"""The stream processor: what the agents call, and how state, alerts and offsets commit together.

Two stages run in every worker:

* **parse** (raw topic): parse a batch, produce canonical events/outcomes, dead letters
  and routed envelopes, then acknowledge the raw messages;
* **detect** (routed topic): feed envelopes to the :class:`PartitionDetector` of their
  partition (hot state in memory) and acknowledge each envelope once all its records
  are processed.

**One transaction per partition.** With ``processing_guarantee="exactly_once"`` Faust
keeps one transactional producer per assigned partition number. Everything produced
while handling partition *p* of either source topic (events, dead letters, envelopes,
state changelog, alerts) goes through *p*'s producer, and Faust's periodic commit sends
*p*'s offsets in that same transaction. The commit is wrapped (:meth:`commit_hook`) so
that it first flushes the hot state and the alerts of every detector, all under one
lock that the batch handlers also hold: a transaction never contains half a batch, the
offsets it commits never run ahead of the state it contains, and a crash aborts the
open transaction so its envelopes, state and alerts are read again and re-produced
exactly once. The local table store (RocksDB) is written only after the commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from faust.types import TP

from spendwatch import metrics
from spendwatch.streams import faust_internals
from spendwatch.streams.dedup import RecentRecordIds, chunk_partition, record_key
from spendwatch.streams.detection import PartitionDetector, is_meta_key, partition_items
from spendwatch.streams.produce import SentBatch, send_batches
from spendwatch.streams.redelivery import RedeliveryGuard
from spendwatch.streams.pipeline import (
    Output,
    ParsedBatch,
    canonical_outputs,
    dead_letter_outputs,
    decode_envelope,
    envelope_outputs,
    parse_batch,
    route_records,
)

if TYPE_CHECKING:
    from faust.types import EventT, Message

    from spendwatch.detectors.engine import Engine
    from spendwatch.streams.app import StreamsApp

log = logging.getLogger(__name__)


class StreamProcessor:
    """Handlers for the two stages plus the commit hook; one per worker."""

    def __init__(self, streams: StreamsApp, engine: Engine) -> None:
        self.streams = streams
        self.app = streams.app
        self.engine = engine
        self.settings = streams.settings
        self.topics = self.settings.kafka.topics
        self.partitions = streams.partitions
        self.lock = asyncio.Lock()
        self.detectors: dict[int, PartitionDetector] = {}
        self.redelivery = RedeliveryGuard()
        self.recent_ids: RecentRecordIds | None = None
        self.set_ids_durable(True)  # the worker checks the raw topic's partitions (worker.ensure_topics)
        self._unacked: dict[int, dict[int, EventT]] = defaultdict(dict)  # routed partition -> offset -> event
        self._done: dict[int, set[int]] = defaultdict(set)  # routed partition -> offsets processed, not yet acked
        self._last_input: dict[int, float] = {}
        self._unstored: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)  # sent, not yet committed
        self._changelog_offsets: dict[int, int] = {}
        self._last_meta: dict[int, bytes] = {}
        self._originals: faust_internals.ConsumerOriginals | None = None
        self._held_resume: set[TP] = set()
        self._inflight: list[Any] = []  # produce futures of the parse stage, awaited before each commit
        self._send_error: BaseException | None = None
        self.events_parsed = 0
        self.alerts_sent = 0

    # -- wiring ----------------------------------------------------------------------------
    def install(self) -> None:
        """Wrap the consumer's commit and hand it the raw topic's fetches.

        Call it once the Faust worker exists (``app.in_worker`` set): creating the consumer
        earlier would freeze ``app.in_transaction`` to False.
        """
        if not self.app.in_worker:
            raise RuntimeError("install the commit hook after creating the faust.Worker")
        consumer = self.app.consumer
        if self._originals is None:
            self._originals = faust_internals.hook_consumer(consumer, commit=self.commit_hook,
                                                            resume_partitions=self._resume_partitions,
                                                            perform_seek=self._perform_seek)
            consumer.handle_in_batches(self.topics.raw, self.handle_raw)

    # Faust's recovery resumes the stream partitions and only then seeks them to their committed
    # offsets; records fetched in between reach the agents around the seek, and Faust's own
    # read-offset bookkeeping then drops or gap-fills (acknowledges unseen) offsets near it: messages
    # lost with their offsets committed. Stream partitions are therefore resumed only after the seek.
    def _resume_partitions(self, tps: Iterable[TP]) -> None:
        tps = set(tps)
        if self.app.rebalancing:
            held = {tp for tp in tps if tp.topic in (self.topics.raw, self.topics.routed)}
            self._held_resume |= held
            tps -= held
        if tps:
            self._originals.resume_partitions(tps)

    async def _perform_seek(self) -> None:
        await self._originals.perform_seek()
        held, self._held_resume = self._held_resume, set()
        if held:
            self._originals.resume_partitions(held)

    def _transactional_id(self, topic: str, partition: int) -> str | None:
        """The transactional producer of the source partition being handled."""
        if not self.app.in_transaction:
            return None
        group = self.app.assignor.group_for_topic(topic)
        return f"{self.app.conf.id}-{group}-{partition}"

    def _currency(self, generation: int) -> Callable[[Message], bool]:
        """A test for the messages of one batch: false for those fetched before the last rebalance (consumer
        ``generation``) or from a partition no longer ours.

        The assignment is read once per batch: the consumer copies it on every call, and the batch handlers
        hold the lock that a rebalance's revoke waits for, so it cannot change meanwhile.
        """
        assignment = self.app.consumer.assignment()
        return lambda message: message.generation_id == generation and message.tp in assignment

    async def _send_all(self, source: TP, outputs: Iterable[Output]) -> list[SentBatch]:
        """Produce ``outputs`` in the transaction of the ``source`` partition being handled."""
        return await send_batches(self.app.producer, outputs, self._transactional_id(source.topic, source.partition))

    # -- stage 1: parse and route ----------------------------------------------------------
    async def handle_raw(self, messages: Sequence[Message]) -> None:
        """Parse one fetch of the raw topic (handed over by the consumer, :class:`~spendwatch.streams.faust_internals.FastDrainConsumer`)."""
        async with self.lock:
            consumer = self.app.consumer
            generation = self.app.consumer_generation_id
            is_current = self._currency(generation)
            by_partition: dict[int, list[Message]] = defaultdict(list)
            for message in messages:
                if not is_current(message):
                    continue  # re-read from the committed offset after the rebalance's seek
                if self.redelivery.first_time(message.topic, message.partition, generation=generation,
                                              offset=message.offset):
                    by_partition[message.partition].append(message)
                else:  # already parsed in this generation: its output is in the open transaction
                    metrics.REDELIVERED.labels(message.topic).inc()
                    consumer.ack(message)
            sent: list[SentBatch] = []
            for partition, part_messages in by_partition.items():
                batch = parse_batch(part_messages, self.settings.adapters)
                if self.recent_ids is not None:
                    if self.recent_ids.durable and not self.recent_ids.knows(partition, generation):
                        await self._restore_ids(partition, generation)
                    self._drop_copies(batch, partition, generation)
                outputs = canonical_outputs(batch, self.topics)
                outputs += dead_letter_outputs(batch.dead_letters, self.topics)
                outputs += envelope_outputs(route_records(batch, self.engine.routes, self.partitions),
                                            self.topics.routed)
                sent += await self._send_all(TP(self.topics.raw, partition), outputs)
                self.events_parsed += len(batch.records)
                if batch.records:
                    metrics.EVENTS_IN.labels("kafka", "ok").inc(len(batch.records))
                for dl in batch.dead_letters:
                    metrics.EVENTS_IN.labels("kafka", "dead_letter").inc()
                    metrics.DEAD_LETTERS.labels(dl.stage, dl.error_type).inc()
                    log.warning("dead letter %s:%s@%s: %s %s", dl.source_topic, dl.source_partition,
                                dl.source_offset, dl.error_type, dl.reason)
            # Acknowledged without waiting for the broker: the commit awaits every send first
            # (:meth:`_await_inflight`), so an offset is never committed before its outputs are written,
            # and the detect stage is not held up behind this batch's round trip.
            self._inflight += [batch.future for batch in sent]
            for part_messages in by_partition.values():
                for message in part_messages:
                    consumer.ack(message)

    async def _restore_ids(self, partition: int, generation: int) -> None:
        """Start a raw partition's retry dedup from the ids committed with its offsets (in the state table)."""
        if partition not in self.detectors:
            await self._detector(partition)  # restores the ids with the partition's detector state
            return
        # a new consumer generation without a revoke: the hot detector state stays, the ids restart from the store
        self._restore_ids_from(partition, generation, partition_items(self.streams.state.data.items(), partition,
                                                                      self.partitions))

    def _restore_ids_from(self, partition: int, generation: int,
                          items: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """Restore the raw partition's ids from the dedup chunks among a partition's table ``items``; returns
        the other items (detector states and metadata)."""
        states, chunks = [], []
        for key, blob in items:
            if chunk_partition(key) is None:
                states.append((key, blob))
            else:
                chunks.append(blob)
        if self.recent_ids is not None and self.recent_ids.durable:
            self.recent_ids.restore(partition, generation, chunks)
        return states

    def set_ids_durable(self, durable: bool) -> None:
        """Whether retry-dedup ids are committed with the raw offsets: only when ``raw`` has ``streams.partitions``
        partitions, so that raw partition *p* commits in routed *p*'s transaction and moves with its state."""
        window = self.settings.streams.dedup_window_records
        self.recent_ids = RecentRecordIds(window, durable=durable) if window else None

    def _drop_copies(self, batch: ParsedBatch, partition: int, generation: int) -> None:
        """Remove the records whose id this partition saw recently (see :mod:`spendwatch.streams.dedup`)."""
        first_time = self.recent_ids.first_time  # type: ignore[union-attr]
        keep = [first_time(partition, generation, record_key(record)) for record in batch.records]
        if all(keep):
            return
        batch.records = [r for r, k in zip(batch.records, keep, strict=True) if k]
        batch.record_json = [j for j, k in zip(batch.record_json, keep, strict=True) if k]
        metrics.DUPLICATES.labels(self.topics.raw).inc(keep.count(False))

    # -- stage 2: detect -------------------------------------------------------------------
    async def _detector(self, partition: int) -> PartitionDetector:
        detector = self.detectors.get(partition)
        if detector is None:
            items = list(partition_items(self.streams.state.data.items(), partition, self.partitions))
            if not any(is_meta_key(key) for key, _ in items):
                items = await self._read_changelog(partition) or items
            detector = PartitionDetector(self.engine, partition, self.settings.streams.allowed_lateness_s)
            detector.restore(self._restore_ids_from(partition, self.app.consumer_generation_id, items))
            window = self.settings.adapters.event_time
            if window.enforce:
                detector.rewind_clock_past(window.bounds(time.time())[1])
            self.detectors[partition] = detector
            log.info("partition %d: %d detector states loaded", partition, len(detector.states))
        return detector

    async def _read_changelog(self, partition: int) -> list[tuple[str, bytes]]:
        """Read one changelog partition directly (committed records only) into the table store.

        Faust restores the table on assignment; on a rebalance while the previous owner's
        transaction is still being aborted it can see the partition as empty. A partition
        whose metadata is missing from the store is therefore read here before use.
        """
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from spendwatch.kafka_security import client_options

        changelog = self.streams.changelog_topic
        tp = TopicPartition(changelog, partition)
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap(), group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", **client_options(self.settings.kafka.security))
        await consumer.start()
        latest: dict[bytes, bytes] = {}
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=500)
                for record in batches.get(tp, ()):
                    latest[record.key] = record.value
        finally:
            await consumer.stop()
        if latest:
            log.warning("partition %d: state read from the changelog (%d keys): the table store had none",
                        partition, len(latest))
            self._unstored[partition].extend(latest.items())
            self._store([partition])
        return [(key.decode(), value) for key, value in latest.items()]

    def _bootstrap(self) -> str:
        return ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker)

    async def handle_routed(self, events: Sequence[EventT]) -> None:
        async with self.lock:
            started = time.perf_counter()
            now = time.monotonic()
            is_current = self._currency(self.app.consumer_generation_id)
            for event in events:
                message = event.message
                if not is_current(message):
                    continue
                partition = message.partition
                detector = await self._detector(partition)
                self._unacked[partition][message.offset] = event
                self._last_input[partition] = now
                detector.accept(message.offset, decode_envelope(message.value))
                self._ack_done(partition, detector)
            metrics.DETECTOR_LATENCY.observe(time.perf_counter() - started)

    def _ack_done(self, partition: int, detector: PartitionDetector) -> None:
        """Acknowledge the envelopes whose records are all processed, in offset order only.

        Faust commits past one unacknowledged offset right after the last commit (it takes it
        for a transaction marker). Acknowledging a later envelope while an earlier one still has
        records in the reorder buffer would therefore commit the earlier one unprocessed (lost
        in a crash), and its own acknowledgement would then be ignored, leaving the state it
        produced in a transaction that never commits.
        """
        done = self._done[partition]
        done.update(detector.take_done())
        unacked = self._unacked[partition]  # offset order: envelopes are added as they are read
        while unacked:
            offset = next(iter(unacked))
            if offset not in done:
                break
            done.discard(offset)
            unacked.pop(offset).ack()
        if not unacked:
            done.clear()

    async def release_idle(self) -> None:
        """Release the reorder buffer of partitions that received nothing for ``idle_release_s``."""
        idle_after = self.settings.streams.idle_release_s
        now = time.monotonic()
        async with self.lock:
            for partition, detector in self.detectors.items():
                if detector.buffered and now - self._last_input.get(partition, now) >= idle_after:
                    detector.release(everything=True)
                    self._ack_done(partition, detector)

    # -- commit ----------------------------------------------------------------------------
    async def _flush(self) -> None:
        """Send every detector's changed state, metadata and alerts into its partition's transaction."""
        changelog = self.streams.state.changelog_topic.get_topic_name()
        pending: list[tuple[int, list[SentBatch], list[SentBatch], list[tuple[bytes, bytes]]]] = []
        for partition, detector in self.detectors.items():
            flush = detector.flush()
            meta_key, meta = flush.meta
            # the ids of the raw partition of the same number: its offsets commit in this transaction
            id_chunks = self.recent_ids.take_chunks(partition) if self.recent_ids is not None else []  # [] unless durable
            if (not (flush.states or flush.alerts or flush.dead_letters or id_chunks)
                    and self._last_meta.get(partition) == meta):
                continue
            self._last_meta[partition] = meta
            writes = [(key.encode(), blob) for key, blob in (*flush.states, *id_chunks)]
            writes.append((meta_key.encode(), meta))
            outputs = [Output(self.topics.alerts, a.dedup_key.encode(), a.model_dump_json().encode())
                       for a in flush.alerts]
            outputs += dead_letter_outputs(flush.dead_letters, self.topics)
            for dl in flush.dead_letters:
                metrics.DEAD_LETTERS.labels(dl.stage, dl.error_type).inc()
            source = TP(self.topics.routed, partition)
            state_sent = await self._send_all(source, [Output(changelog, key, blob, partition) for key, blob in writes])
            other_sent = await self._send_all(source, outputs)
            pending.append((partition, state_sent, other_sent, writes))
            for alert in flush.alerts:
                metrics.ALERTS_EMITTED.labels(alert.detector, alert.action.value).inc()
            self.alerts_sent += len(flush.alerts)
        for partition, state_sent, other_sent, writes in pending:
            await asyncio.gather(*(batch.future for batch in (*state_sent, *other_sent)))
            if state_sent:
                self._changelog_offsets[partition] = max(batch.last_offset() for batch in state_sent)
            self._unstored[partition].extend(writes)

    async def commit_hook(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Faust's commit, preceded by a flush of hot state and followed by the local store writes."""
        async with self.lock:
            return await self._commit_locked(topics, start_new_transaction)

    async def _await_inflight(self) -> None:
        """Wait for the parse stage's sends; a failed one raises, so nothing is committed past it."""
        if self._send_error is not None:
            raise self._send_error
        inflight, self._inflight = self._inflight, []
        if not inflight:
            return
        try:
            await asyncio.gather(*inflight)
        except Exception as exc:
            # Sticky: a later commit must not carry these offsets either. The worker stops; a restart
            # replays from the last commit.
            self._send_error = exc
            log.error("a send of the parse stage failed (%r): stopping before committing past it", exc)
            await self.app.crash(exc)
            raise

    async def _commit_locked(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        consumer = self.app.consumer
        started = time.perf_counter()
        await self._await_inflight()
        sent = time.perf_counter()
        await self._flush()
        flushed = time.perf_counter()
        before = faust_internals.committed_offsets(consumer)
        done = await self._originals.commit(topics, start_new_transaction=start_new_transaction)
        committed = time.perf_counter()
        metrics.COMMIT_SECONDS.labels("sends").observe(sent - started)
        metrics.COMMIT_SECONDS.labels("flush").observe(flushed - sent)
        metrics.COMMIT_SECONDS.labels("transaction").observe(committed - flushed)
        if self.app.in_transaction:
            # routed partition p's state went out in p's transaction (its producer serves every source topic of
            # routed's partition group); that transaction committed if any of those topics' offsets for p advanced
            group = self._topic_group
            routed_group = group(self.topics.routed)
            partitions = {tp.partition for tp, offset in faust_internals.committed_offsets(consumer).items()
                          if offset is not None and offset != before.get(tp)
                          and routed_group is not None and group(tp.topic) == routed_group}
        else:
            partitions = set(self._unstored)
        self._store(partitions)
        self._report_lag()
        return done

    def _store(self, partitions: Iterable[int]) -> None:
        """Write committed state to the local table store (RocksDB or memory)."""
        table = self.streams.state
        store = table.data
        changelog = table.changelog_topic.get_topic_name()
        for partition in partitions:
            writes = self._unstored.pop(partition, None)
            if not writes:
                continue
            for key, blob in writes:
                faust_internals.store_put(store, partition, key, blob)
            offset = self._changelog_offsets.get(partition)
            if offset is not None:
                store.set_persisted_offset(TP(changelog, partition), offset)

    def _topic_group(self, topic: str) -> int | None:
        """The assignor's partition group of ``topic`` (topics of one group share transactional producers)."""
        try:
            return self.app.assignor.group_for_topic(topic)
        except KeyError:
            return None

    def _report_lag(self) -> None:
        consumer = self.app.consumer
        group = self.app.conf.id
        for tp in consumer.assignment():
            try:
                highwater = consumer.highwater(tp)
                position = faust_internals.read_offset(consumer, tp)
            except Exception:  # noqa: BLE001 - lag is best effort
                continue
            if highwater is not None and position is not None:
                metrics.CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(max(0, highwater - position - 1))

    # -- rebalance -------------------------------------------------------------------------
    async def before_revoke(self, revoked: set) -> None:
        """Commit what is done so the next owner of these partitions starts from it."""
        try:
            await self.commit_hook()
        except Exception:  # noqa: BLE001 - the next owner replays from the last commit anyway
            log.exception("commit before revoke failed; the partitions will be replayed from the last commit")

    def after_revoke(self, revoked: set) -> None:
        """Forget hot state of every partition: uncommitted work is replayed by whoever owns it next."""
        for partition in list(self.detectors):
            self.detectors.pop(partition, None)
        self.redelivery.forget()
        if self.recent_ids is not None:
            self.recent_ids.forget()
        self._held_resume.clear()
        self._unacked.clear()
        self._done.clear()
        self._unstored.clear()
        self._last_meta.clear()
        self._inflight.clear()  # awaited by the commit before the revoke; the next owner replays anything else
