"""Produce a stage's outputs as whole record batches, one per topic partition.

Faust's ``Producer.send``, and aiokafka's under it, cost several microseconds per message: a
signal, a lock, a metadata wait, the partitioner and one future per record. A stage produces
hundreds of records per fetch, so :func:`send_batches` appends them to one aiokafka
``BatchBuilder`` per topic partition (records encoded in C, one future per batch) and hands
each batch to the same producer with ``send_batch``. Batches join the source partition's
transaction exactly as single sends do (the accumulator adds their partition to it), and
records keep their order within a topic partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spendwatch.streams import faust_internals

if TYPE_CHECKING:
    from faust.transport.drivers.aiokafka import Producer

    from spendwatch.streams.pipeline import Output


@dataclass(slots=True)
class SentBatch:
    """One batch handed to the producer: ``future`` resolves to the metadata of its first record."""

    future: asyncio.Future[Any]
    records: int

    def last_offset(self) -> int:
        """Offset of the batch's last record (once ``future`` is done)."""
        return self.future.result().offset + self.records - 1


async def send_batches(producer: Producer, outputs: Iterable[Output],
                       transactional_id: str | None = None) -> list[SentBatch]:
    """Hand ``outputs`` to ``producer`` (Faust's), in ``transactional_id``'s transaction if given.

    An output without a partition goes where the producer's partitioner puts its key. The
    returned batches are not awaited: their futures fail if the broker does not take them.
    """
    aio = faust_internals.aiokafka_producer(producer, transactional_id)
    grouped: dict[tuple[str, int], list[Output]] = {}
    # the partition lists the producer's partitioner takes, read once per topic: aiokafka's own
    # per-record lookup (``_partition``) rebuilds both from the metadata for every record
    partitions: dict[str, tuple[list[int], list[int]]] = {}
    partitioner = faust_internals.producer_partitioner(aio)
    for out in outputs:
        partition = out.partition
        if partition is None:
            lists = partitions.get(out.topic)
            if lists is None:
                metadata = await faust_internals.wait_on_metadata(aio, out.topic)
                lists = partitions[out.topic] = (list(metadata.partitions_for_topic(out.topic)),
                                                 list(metadata.available_partitions_for_topic(out.topic)))
            partition = partitioner(out.key, *lists)
        grouped.setdefault((out.topic, partition), []).append(out)
    if not grouped:
        return []
    lock = faust_internals.transaction_lock(producer, transactional_id)
    sent: list[SentBatch] = []
    async with lock:
        for (topic, partition), outs in grouped.items():
            batch, count = aio.create_batch(), 0
            for out in outs:
                if batch.append(key=out.key, value=out.value, timestamp=None) is not None:
                    count += 1
                    continue
                if count:  # full: send it and start the next one with this record
                    sent.append(SentBatch(await aio.send_batch(batch, topic, partition=partition), count))
                    batch, count = aio.create_batch(), 0
                    if batch.append(key=out.key, value=out.value, timestamp=None) is not None:
                        count = 1
                        continue
                # larger than a whole batch: a single send, which enforces max_request_size
                sent.append(SentBatch(await aio.send(topic, out.value, key=out.key, partition=partition), 1))
            if count:
                sent.append(SentBatch(await aio.send_batch(batch, topic, partition=partition), count))
    return sent
