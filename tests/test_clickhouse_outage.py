"""ClickHouse unavailable for a while: the sink buffers with backpressure, retries, and loses nothing."""

from __future__ import annotations

import asyncio
import threading

import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from clickhouse_kit import keyed, make_events, make_sink_topics, produce, sink_settings
from spendwatch.sinks.clickhouse.client import get_client
from spendwatch.sinks.clickhouse.service import ClickHouseSink

pytestmark = pytest.mark.kafka


class FlakyClient:
    """A real chDB client whose inserts fail while ``outage`` is set.

    With ``land_then_fail`` the first failing insert reaches ClickHouse and only then raises,
    like an HTTP timeout after the server committed the rows.
    """

    def __init__(self, real, state: dict):
        self._real, self._state = real, state

    def insert(self, *args, **kwargs):
        if self._state["outage"].is_set():
            self._state["failed_inserts"] += 1
            if self._state.pop("land_then_fail", False):
                self._real.insert(*args, **kwargs)
            raise OperationalError("Connection refused (simulated outage)")
        return self._real.insert(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._real, name)


async def wait_until(condition, timeout: float = 30.0) -> None:
    """Poll a condition that has no event to await (the sink's pause is internal)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_outage_pauses_consumption_then_catches_up_exactly(tmp_path, kafka_bootstrap, unique_prefix):
    """The first failing insert lands and then times out; the next ones are refused until ClickHouse is back."""
    settings = sink_settings(tmp_path, kafka_bootstrap, unique_prefix, batch_max_rows=100, buffer_max_rows=300)
    await make_sink_topics(settings, event_partitions=2)
    state = {"outage": threading.Event(), "failed_inserts": 0, "land_then_fail": True}
    sink = ClickHouseSink(settings, client_factory=lambda: FlakyClient(
        get_client(settings.clickhouse, settings.data_dir), state))
    await sink.start()
    try:
        state["outage"].set()
        events = make_events(1200)
        producing = asyncio.create_task(produce(kafka_bootstrap, settings.kafka.topics.events, keyed(events)))
        max_buffered = 0

        def paused_with_backlog() -> bool:
            nonlocal max_buffered
            max_buffered = max(max_buffered, sink.buffered_rows)
            return sink.paused and state["failed_inserts"] >= 3

        await wait_until(paused_with_backlog)
        assert sink.rows_written == 0
        assert max_buffered <= settings.clickhouse.buffer_max_rows + settings.clickhouse.batch_max_rows
        await producing

        state["outage"].clear()  # ClickHouse is back
        await sink.wait_for(lambda s: s.rows_written >= len(events), timeout=60)
        await wait_until(lambda: not sink.paused)  # consumption resumed once the backlog drained
        [(n, distinct, spend)] = await sink.query("SELECT count(), uniqExact(event_id), sum(cost_usd) FROM events")
        assert (n, distinct) == (len(events), len(events))
        assert spend == sum(e.cost_usd for e in events)
        [(rollup,)] = await sink.query("SELECT sum(cost_usd) FROM spend_hourly WHERE dimension = 'all'")
        assert rollup == spend  # the retried insert did not feed the materialized views twice
    finally:
        await sink.stop()


async def test_stop_during_an_outage_gives_up_after_the_timeout_and_loses_nothing(tmp_path, kafka_bootstrap,
                                                                                  unique_prefix):
    settings = sink_settings(tmp_path, kafka_bootstrap, unique_prefix, shutdown_timeout_s=1.0)
    await make_sink_topics(settings, event_partitions=2)
    state = {"outage": threading.Event(), "failed_inserts": 0}
    sink = ClickHouseSink(settings, client_factory=lambda: FlakyClient(
        get_client(settings.clickhouse, settings.data_dir), state))
    await sink.start()
    state["outage"].set()
    events = make_events(60)
    await produce(kafka_bootstrap, settings.kafka.topics.events, keyed(events))
    await wait_until(lambda: state["failed_inserts"] >= 2)
    await asyncio.wait_for(sink.stop(), timeout=20)  # returns although ClickHouse never came back
    assert sink.rows_written == 0

    successor = ClickHouseSink(settings)
    await successor.start()
    try:
        await successor.wait_for(lambda s: s.rows_written >= len(events), timeout=60)
        [(n, spend)] = await successor.query("SELECT count(), sum(cost_usd) FROM events")
        assert (n, spend) == (len(events), sum(e.cost_usd for e in events))
    finally:
        await successor.stop()
