"""The stages' entry points: thin loops that hand batches to the processor.

* raw: parsed a whole fetch at a time, handed over by the consumer itself
  (:class:`spendwatch.streams.faust_internals.FastDrainConsumer`): Faust's per-message path into an agent costs
  more than parsing the message;
* routed: an agent taking batches (``noack_take``) of envelopes, each already a batch
  of records.

Messages are acknowledged by the processor only once their effect is in the next commit.
"""

from __future__ import annotations

from spendwatch.streams.app import StreamsApp
from spendwatch.streams.processor import StreamProcessor


def register_agents(streams: StreamsApp, processor: StreamProcessor) -> None:
    app = streams.app
    conf = streams.settings.streams
    streams.app.processor = processor

    # raw -> events, outcomes, dead letters and routed envelopes: subscribed here, handed to
    # processor.handle_raw by the consumer (StreamProcessor.install)
    app.topics.add(streams.raw)

    @app.agent(streams.routed, name="spendwatch.detect")
    async def detect(stream):  # noqa: ANN001 - a Faust stream
        """routed envelopes -> detector state (hot, in memory) -> alerts at the next commit."""
        async for batch in stream.noack_take(conf.batch_size, within=conf.batch_within_s):
            await processor.handle_routed(batch)

    @app.timer(interval=min(1.0, conf.idle_release_s))
    async def release_idle_partitions() -> None:
        await processor.release_idle()
