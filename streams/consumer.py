"""Faust's Kafka consumer with cheaper hand-offs: whole fetches for batch topics, direct awaits for the rest.

Faust's fetch loop hands every message to the agents one at a time through
``Service.wait_first(callback, suspend_flow)`` (four tasks and an ``asyncio.wait`` per
message), then through the conductor, an agent queue and the stream iterator. For a
topic whose handler takes batches anyway that costs more than the handler's own work
and caps a worker at a few thousand messages a second. :class:`FastDrainConsumer`

* hands the messages of a **batch topic** (:meth:`FastDrainConsumer.handle_in_batches`)
  to its handler once per fetch, as a list of Faust messages, tracked like any other so
  that offsets commit only once the handler acknowledges them (``consumer.ack``);
* awaits the conductor directly for every other topic while the flow runs, and falls
  back to Faust's ``wait_first`` while a rebalance suspends it.

Rebalances. A fetch read before a rebalance suspended the flow is not handed over (its
partitions are sought back to their committed offsets when the rebalance ends, as Faust
does with the messages it abandons); a handler already running is not interrupted (it is
shielded from the fetcher's cancellation, and the commit before the revoke waits for
it). A message handed to an agent after a rebalance is recognised by its consumer
generation and dropped there (see
:meth:`~spendwatch.streams.processor.StreamProcessor._currency`). Read offsets and
gap tracking are Faust's, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message

#: Messages handed over between two yields to the event loop (Faust's own value).
YIELD_EVERY = 100

BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]


class FastDrainConsumer(faust_aiokafka.Consumer):
    """The aiokafka consumer of Faust with the hand-offs described in the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_handlers: dict[str, BatchHandler] = {}

    def handle_in_batches(self, topic: str, handler: BatchHandler) -> None:
        """Hand ``topic``'s messages to ``handler`` a fetch at a time instead of to Faust's agents.

        The topic must be subscribed (``app.topics.add(topic)``); the handler acknowledges each
        message with ``consumer.ack(message)`` once its effect is in the next commit.
        """
        self._batch_handlers[topic] = handler

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by every worker test
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        flow_suspended = self.suspend_flow.is_set
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        batch_handlers = self._batch_handlers
        track = self.track_message
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                messages = getmany(timeout=1.0)
                await asyncio.sleep(0)
                if self.should_stop:
                    continue
                batches: dict[str, list[Message]] = {}
                async for tp, message in messages:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    last_read = read_offsets[tp]
                    if last_read is not None and offset < last_read:
                        continue  # read before (Faust drops these too)
                    if offset - (last_read or 0) > 1 and last_read and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last_read + 1, offset)  # offsets without a message: transaction markers
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if message.topic in batch_handlers:
                        track(message)
                        batches.setdefault(message.topic, []).append(message)
                    elif flow_suspended():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        await callback(message)
                    read_offsets[tp] = offset
                for topic, batch in batches.items():
                    if not flow_suspended():  # else: re-read from the committed offsets once the rebalance ends
                        await asyncio.shield(asyncio.ensure_future(batch_handlers[topic](batch)))
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class FastDrainTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport, creating :class:`FastDrainConsumer`."""

    Consumer = FastDrainConsumer
