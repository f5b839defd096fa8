"""Commit protocol: how hot state, alerts and offsets commit together, and what a rebalance does to them.

**One transaction per partition.** With ``processing_guarantee="exactly_once"`` Faust
keeps one transactional producer per assigned partition number. Everything produced
while handling partition *p* of either source topic (events, dead letters, envelopes,
state changelog, alerts) goes through *p*'s producer (:meth:`CommitProtocol.send_all`), and
Faust's periodic commit sends *p*'s offsets in that same transaction. The commit is wrapped
(:meth:`CommitProtocol.commit_hook`) so that it first awaits the parse stage's sends and
flushes the hot state and the alerts of every detector, all under one lock that the batch
handlers also hold: a transaction never contains half a batch, the offsets it commits never
run ahead of the state it contains, and a crash aborts the open transaction so its envelopes,
state and alerts are read again and re-produced exactly once. The local table store is
written only after the commit (:mod:`spendwatch.streams.store_writes`).

A part of :class:`~spendwatch.streams.processor.StreamProcessor` (which holds the state it uses).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from faust.types import TP

from spendwatch import metrics
from spendwatch.streams import faust_internals
from spendwatch.streams.lag_metrics import report_lag
from spendwatch.streams.pipeline import Output, dead_letter_outputs
from spendwatch.streams.produce import SentBatch, send_batches

if TYPE_CHECKING:
    from faust.types import Message

    from spendwatch.streams.processor import StreamProcessor

log = logging.getLogger(__name__)


class CommitProtocol:
    """The consumer hooks, the transactional sends, the commit and the revoke."""

    # -- wiring ----------------------------------------------------------------------------
    def install(self: StreamProcessor) -> None:
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
    def _resume_partitions(self: StreamProcessor, tps: Iterable[TP]) -> None:
        tps = set(tps)
        if self.app.rebalancing:
            held = {tp for tp in tps if tp.topic in (self.topics.raw, self.topics.routed)}
            self._held_resume |= held
            tps -= held
        if tps:
            self._originals.resume_partitions(tps)

    async def _perform_seek(self: StreamProcessor) -> None:
        await self._originals.perform_seek()
        held, self._held_resume = self._held_resume, set()
        if held:
            self._originals.resume_partitions(held)

    def _transactional_id(self: StreamProcessor, topic: str, partition: int) -> str | None:
        """The transactional producer of the source partition being handled."""
        if not self.app.in_transaction:
            return None
        group = self.app.assignor.group_for_topic(topic)
        return f"{self.app.conf.id}-{group}-{partition}"

    def _topic_group(self: StreamProcessor, topic: str) -> int | None:
        """The assignor's partition group of ``topic`` (topics of one group share transactional producers)."""
        try:
            return self.app.assignor.group_for_topic(topic)
        except KeyError:
            return None

    def currency(self: StreamProcessor, generation: int) -> Callable[[Message], bool]:
        """A test for the messages of one batch: false for those fetched before the last rebalance (consumer
        ``generation``) or from a partition no longer ours.

        The assignment is read once per batch: the consumer copies it on every call, and the batch handlers
        hold the lock that a rebalance's revoke waits for, so it cannot change meanwhile.
        """
        assignment = self.app.consumer.assignment()
        return lambda message: message.generation_id == generation and message.tp in assignment

    async def send_all(self: StreamProcessor, source: TP, outputs: Iterable[Output]) -> list[SentBatch]:
        """Produce ``outputs`` in the transaction of the ``source`` partition being handled."""
        return await send_batches(self.app.producer, outputs, self._transactional_id(source.topic, source.partition))

    # -- commit ----------------------------------------------------------------------------
    async def _flush(self: StreamProcessor) -> None:
        """Send every detector's changed state, metadata and alerts into its partition's transaction."""
        changelog = self.streams.state.changelog_topic.get_topic_name()
        pending: list[tuple[int, list[SentBatch], list[SentBatch], list[tuple[bytes, bytes]]]] = []
        for partition, detector in self.detectors.items():
            flush = detector.flush()
            meta_key, meta = flush.meta
            # the ids of the raw partition of the same number: its offsets commit in this transaction
            id_chunks = self.dedup.take_chunks(partition)  # [] unless durable
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
            state_sent = await self.send_all(source, [Output(changelog, key, blob, partition) for key, blob in writes])
            other_sent = await self.send_all(source, outputs)
            pending.append((partition, state_sent, other_sent, writes))
            for alert in flush.alerts:
                metrics.ALERTS_EMITTED.labels(alert.detector, alert.action.value).inc()
            self.alerts_sent += len(flush.alerts)
        for partition, state_sent, other_sent, writes in pending:
            await asyncio.gather(*(batch.future for batch in (*state_sent, *other_sent)))
            last = max(batch.last_offset() for batch in state_sent) if state_sent else None
            self.store_writes.add(partition, writes, last)

    async def commit_hook(self: StreamProcessor, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Faust's commit, preceded by a flush of hot state and followed by the local store writes."""
        async with self.lock:
            return await self._commit_locked(topics, start_new_transaction)

    async def await_inflight(self: StreamProcessor) -> None:
        """Wait for the parse stage's sends; a failed one raises, so nothing is committed past it."""
        if self._send_error is not None:
            raise self._send_error
        inflight, self.inflight = self.inflight, []
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

    async def _commit_locked(self: StreamProcessor, topics: Any = None, start_new_transaction: bool = True) -> bool:
        consumer = self.app.consumer
        started = time.perf_counter()
        await self.await_inflight()
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
            partitions = self.store_writes.pending()
        self.store_writes.store(partitions)
        report_lag(self.app)
        return done

    # -- rebalance -------------------------------------------------------------------------
    async def before_revoke(self: StreamProcessor, revoked: set) -> None:
        """Commit what is done so the next owner of these partitions starts from it."""
        try:
            await self.commit_hook()
        except Exception:  # noqa: BLE001 - the next owner replays from the last commit anyway
            log.exception("commit before revoke failed; the partitions will be replayed from the last commit")

    def after_revoke(self: StreamProcessor, revoked: set) -> None:
        """Forget hot state of every partition: uncommitted work is replayed by whoever owns it next."""
        for partition in list(self.detectors):
            self.detectors.pop(partition, None)
        self.redelivery.forget()
        self.dedup.forget()
        self._held_resume.clear()
        self.unacked.clear()
        self.done.clear()
        self.store_writes.forget()
        self._last_meta.clear()
        self.inflight.clear()  # awaited by the commit before the revoke; the next owner replays anything else
