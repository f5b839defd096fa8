"""Detect stage (routed topic): feed envelopes to the hot :class:`PartitionDetector` of their partition and
acknowledge each envelope, in offset order, once all its records are processed.

A part of :class:`~spendwatch.streams.processor.StreamProcessor` (which holds the state it uses).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from spendwatch import metrics
from spendwatch.streams.detection import PartitionDetector, is_meta_key, partition_items
from spendwatch.detectors.observation_wire import decode_envelope

if TYPE_CHECKING:
    from faust.types import EventT

    from spendwatch.streams.processor import StreamProcessor

log = logging.getLogger(__name__)


class DetectStage:
    """The routed topic's batch handler, the hot detectors and their restore."""

    async def _detector(self: StreamProcessor, partition: int) -> PartitionDetector:
        detector = self.detectors.get(partition)
        if detector is None:
            items = list(partition_items(self.streams.state.data.items(), partition, self.partitions))
            if not any(is_meta_key(key) for key, _ in items):
                items = await self._read_changelog(partition) or items
            detector = PartitionDetector(self.engine, partition, self.settings.streams.allowed_lateness_s)
            detector.restore(self.dedup.restore_from(partition, self.app.consumer_generation_id, items))
            window = self.settings.adapters.event_time
            if window.enforce:
                detector.rewind_clock_past(window.bounds(time.time())[1])
            self.detectors[partition] = detector
            log.info("partition %d: %d detector states loaded", partition, len(detector.states))
        return detector

    async def _read_changelog(self: StreamProcessor, partition: int) -> list[tuple[str, bytes]]:
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
            self.store_writes.add(partition, latest.items())
            self.store_writes.store([partition])
        return [(key.decode(), value) for key, value in latest.items()]

    def _bootstrap(self: StreamProcessor) -> str:
        return ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker)

    async def handle_routed(self: StreamProcessor, events: Sequence[EventT]) -> None:
        async with self.lock:
            started = time.perf_counter()
            now = time.monotonic()
            is_current = self.currency(self.app.consumer_generation_id)
            for event in events:
                message = event.message
                if not is_current(message):
                    continue
                partition = message.partition
                detector = await self._detector(partition)
                self.unacked[partition][message.offset] = event
                self.last_input[partition] = now
                detector.accept(message.offset, decode_envelope(message.value))
                self._ack_done(partition, detector)
            metrics.DETECTOR_LATENCY.observe(time.perf_counter() - started)

    def _ack_done(self: StreamProcessor, partition: int, detector: PartitionDetector) -> None:
        """Acknowledge the envelopes whose records are all processed, in offset order only.

        Faust commits past one unacknowledged offset right after the last commit (it takes it
        for a transaction marker). Acknowledging a later envelope while an earlier one still has
        records in the reorder buffer would therefore commit the earlier one unprocessed (lost
        in a crash), and its own acknowledgement would then be ignored, leaving the state it
        produced in a transaction that never commits.
        """
        done = self.done[partition]
        done.update(detector.take_done())
        unacked = self.unacked[partition]  # offset order: envelopes are added as they are read
        while unacked:
            offset = next(iter(unacked))
            if offset not in done:
                break
            done.discard(offset)
            unacked.pop(offset).ack()
        if not unacked:
            done.clear()

    async def release_idle(self: StreamProcessor) -> None:
        """Release the reorder buffer of partitions that received nothing for ``idle_release_s``."""
        idle_after = self.settings.streams.idle_release_s
        now = time.monotonic()
        async with self.lock:
            for partition, detector in self.detectors.items():
                if detector.buffered and now - self.last_input.get(partition, now) >= idle_after:
                    detector.release(everything=True)
                    self._ack_done(partition, detector)
