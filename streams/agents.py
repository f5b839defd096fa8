"""The agents: thin loops that take batches from a topic and hand them to the processor.

Batches (``noack_take``) rather than single events, because Faust's per-event overhead
and per-event table writes cap a worker at about a thousand events a second; messages
are acknowledged by the processor only once their effect is in the next commit.
"""

from __future__ import annotations

from spendwatch.streams.app import StreamsApp
from spendwatch.streams.processor import StreamProcessor


def register_agents(streams: StreamsApp, processor: StreamProcessor) -> None:
    app = streams.app
    conf = streams.settings.streams
    streams.app.processor = processor

    @app.agent(streams.raw, name="spendwatch.parse")
    async def parse(stream):  # noqa: ANN001 - a Faust stream
        """raw -> events, outcomes, dead letters and routed envelopes."""
        async for batch in stream.noack_take(conf.batch_size, within=conf.batch_within_s):
            await processor.handle_raw(batch)

    @app.agent(streams.routed, name="spendwatch.detect")
    async def detect(stream):  # noqa: ANN001 - a Faust stream
        """routed envelopes -> detector state (hot, in memory) -> alerts at the next commit."""
        async for batch in stream.noack_take(conf.batch_size, within=conf.batch_within_s):
            await processor.handle_routed(batch)

    @app.timer(interval=min(1.0, conf.idle_release_s))
    async def release_idle_partitions() -> None:
        await processor.release_idle()
