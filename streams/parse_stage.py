"""Parse stage (raw topic): parse a fetch, drop retried copies, produce canonical records, dead letters and
routed envelopes in the raw partition's transaction, then acknowledge the raw messages.

A part of :class:`~spendwatch.streams.processor.StreamProcessor` (which holds the state it uses).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from faust.types import TP

from spendwatch import metrics
from spendwatch.streams.detection import partition_items
from spendwatch.streams.pipeline import canonical_outputs, dead_letter_outputs, envelope_outputs, parse_batch, route_records

if TYPE_CHECKING:
    from faust.types import Message

    from spendwatch.streams.processor import StreamProcessor
    from spendwatch.streams.produce import SentBatch

log = logging.getLogger(__name__)


class ParseStage:
    """The raw topic's batch handler (handed whole fetches by the consumer)."""

    async def handle_raw(self: StreamProcessor, messages: Sequence[Message]) -> None:
        """Parse one fetch of the raw topic (handed over by
        :class:`~spendwatch.streams.faust_internals.FastDrainConsumer`)."""
        async with self.lock:
            consumer = self.app.consumer
            generation = self.app.consumer_generation_id
            is_current = self.currency(generation)
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
                if self.dedup.needs_restore(partition, generation):
                    await self._restore_ids(partition, generation)
                self.dedup.drop_copies(batch, partition, generation)
                outputs = canonical_outputs(batch, self.topics)
                outputs += dead_letter_outputs(batch.dead_letters, self.topics)
                outputs += envelope_outputs(route_records(batch, self.engine.routes, self.partitions),
                                            self.topics.routed)
                sent += await self.send_all(TP(self.topics.raw, partition), outputs)
                self.events_parsed += len(batch.records)
                if batch.records:
                    metrics.EVENTS_IN.labels("kafka", "ok").inc(len(batch.records))
                for dl in batch.dead_letters:
                    metrics.EVENTS_IN.labels("kafka", "dead_letter").inc()
                    metrics.DEAD_LETTERS.labels(dl.stage, dl.error_type).inc()
                    log.warning("dead letter %s:%s@%s: %s %s", dl.source_topic, dl.source_partition,
                                dl.source_offset, dl.error_type, dl.reason)
            # Acknowledged without waiting for the broker: the commit awaits every send first
            # (CommitProtocol.await_inflight), so an offset is never committed before its outputs are written,
            # and the detect stage is not held up behind this batch's round trip.
            self.inflight += [batch.future for batch in sent]
            for part_messages in by_partition.values():
                for message in part_messages:
                    consumer.ack(message)

    async def _restore_ids(self: StreamProcessor, partition: int, generation: int) -> None:
        """Start a raw partition's retry dedup from the ids committed with its offsets (in the state table)."""
        if partition not in self.detectors:
            await self._detector(partition)  # restores the ids with the partition's detector state
            return
        # a new consumer generation without a revoke: the hot detector state stays, the ids restart from the store
        self.dedup.restore_from(partition, generation, partition_items(self.streams.state.data.items(), partition,
                                                                       self.partitions))
