"""Exactly once across crashes: a sink killed mid-stream and restarted neither loses nor doubles a row."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from clickhouse_connect.driver.exceptions import OperationalError

from clickhouse_kit import keyed, make_events, make_sink_topics, produce, sink_settings
from spendwatch.sinks.clickhouse.client import get_client
from spendwatch.sinks.clickhouse.report import available_reports, run_report
from spendwatch.sinks.clickhouse.service import ClickHouseSink

pytestmark = pytest.mark.kafka


async def test_rows_written_but_not_committed_are_skipped_on_restart(tmp_path, kafka_bootstrap, unique_prefix):
    """The crash window: rows in ClickHouse, Kafka offsets not committed. The successor skips exactly those."""
    settings = sink_settings(tmp_path, kafka_bootstrap, unique_prefix)
    await make_sink_topics(settings, event_partitions=3)
    topic = settings.kafka.topics.events
    committed, uncommitted, later = make_events(200), make_events(300, start=200), make_events(100, start=500)

    await produce(kafka_bootstrap, topic, keyed(committed))
    crashing = ClickHouseSink(settings)
    await crashing.start()
    await crashing.wait_for(lambda s: s.rows_written >= len(committed), timeout=60)

    async def no_commit(offsets):  # dies between the insert and the offset commit, every time from now on
        return None

    crashing._commit = no_commit
    await produce(kafka_bootstrap, topic, keyed(uncommitted))
    await crashing.wait_for(lambda s: s.rows_written >= len(committed) + len(uncommitted), timeout=60)
    await crashing.stop()

    await produce(kafka_bootstrap, topic, keyed(later))
    successor = ClickHouseSink(settings)
    await successor.start()
    try:
        await successor.wait_for(lambda s: s.rows_written >= len(later), timeout=60)
        assert successor.records_skipped == len(uncommitted)
        everything = committed + uncommitted + later
        [(n, distinct, spend)] = await successor.query(
            "SELECT count(), uniqExact(kafka_partition, kafka_offset), sum(cost_usd) FROM events")
        assert n == distinct == len(everything)
        assert spend == sum(e.cost_usd for e in everything)
        [(rollup,)] = await successor.query("SELECT sum(cost_usd) FROM spend_hourly WHERE dimension = 'all'")
        assert rollup == spend
    finally:
        await successor.stop()


MATERIALIZED_VIEWS = ("spend_hourly_mv", "spend_daily_mv", "session_totals_mv", "key_directory_mv")


class DiesInsideAnInsert:
    """A real chDB client whose first events insert lands in ``events`` but not in the views
    it feeds (as if the process died between those parts); nothing lands after that."""

    def __init__(self, real, died: threading.Event):
        self._real, self._died = real, died

    def insert(self, table, *args, **kwargs):
        if table != "events":
            return self._real.insert(table, *args, **kwargs)
        if not self._died.is_set():
            self._died.set()
            for view in MATERIALIZED_VIEWS:
                self._real.command(f"DETACH TABLE {view}")
            try:
                self._real.insert(table, *args, **kwargs)
            finally:
                for view in MATERIALIZED_VIEWS:
                    self._real.command(f"ATTACH TABLE {view}")
        raise OperationalError("the process is gone")

    def __getattr__(self, name):
        return getattr(self._real, name)


async def test_crash_inside_one_insert_leaves_rollups_exact(tmp_path, kafka_bootstrap, unique_prefix):
    """Raw part written, materialized-view parts not, offsets not committed: the successor re-inserts
    that batch with its original token and ClickHouse completes only the missing parts."""
    settings = sink_settings(tmp_path, kafka_bootstrap, unique_prefix, shutdown_timeout_s=1.0)
    await make_sink_topics(settings, event_partitions=2)
    died = threading.Event()
    dying = ClickHouseSink(settings, client_factory=lambda: DiesInsideAnInsert(
        get_client(settings.clickhouse, settings.data_dir), died))
    await dying.start()
    events = make_events(400)
    await produce(kafka_bootstrap, settings.kafka.topics.events, keyed(events))
    assert await asyncio.to_thread(died.wait, 60), "the sink never inserted the events"  # set by the sink's thread
    await dying.stop()  # gives up after shutdown_timeout_s: nothing committed

    successor = ClickHouseSink(settings)
    await successor.start()
    try:
        await successor.wait_caught_up(timeout=60)
        exact = sum(e.cost_usd for e in events)
        [(n, raw)] = await successor.query("SELECT count(), sum(cost_usd) FROM events")
        assert (n, raw) == (len(events), exact)
        for sql in ("SELECT sum(cost_usd) FROM spend_hourly WHERE dimension = 'all'",
                    "SELECT sum(cost_usd) FROM spend_daily WHERE dimension = 'team'",
                    "SELECT sum(cost_usd) FROM session_totals"):
            [(rollup,)] = await successor.query(sql)
            assert rollup == exact, sql
        assert successor.batches_completed == 1
    finally:
        await successor.stop()


async def _committed_total(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(meta.offset for meta in offsets.values() if meta.offset > 0)
    finally:
        await admin.close()


async def _end_total(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _poll(condition, timeout: float, what: str, proc: subprocess.Popen) -> None:
    """Poll a broker-side condition (the sink runs in another process: no event to await)."""
    async with asyncio.timeout(timeout):
        while not await condition():
            assert proc.poll() is None, f"sink exited with {proc.returncode} while waiting for {what}"
            await asyncio.sleep(0.1)


def _start_sink(config: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([str(Path(sys.executable).parent / "spendwatch"), "sink", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


@pytest.mark.slow
async def test_sigkill_mid_stream_then_restart_is_exact(tmp_path, kafka_bootstrap, unique_prefix):
    partitions = 4
    settings = sink_settings(tmp_path, kafka_bootstrap, unique_prefix, flush_interval_s=0.05, batch_max_rows=40)
    await make_sink_topics(settings, event_partitions=partitions)
    config = tmp_path / "spendwatch.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    group, topic, log = settings.clickhouse.consumer_group, settings.kafka.topics.events, tmp_path / "sink.log"
    warmup, in_flight, after = make_events(500), make_events(2000, start=500), make_events(1500, start=2500)
    events = warmup + in_flight + after

    sink = _start_sink(config, log)
    try:
        await produce(kafka_bootstrap, topic, keyed(warmup))
        await _poll(lambda: _above(kafka_bootstrap, group, len(warmup) - 1), 90, "the warm-up rows", sink)
        first, rest = in_flight[:1000], in_flight[1000:]
        await produce(kafka_bootstrap, topic, keyed(first))
        await _poll(lambda: _above(kafka_bootstrap, group, len(warmup)), 90, "the next batches", sink)
        os.kill(sink.pid, signal.SIGKILL)  # mid-stream: batches of 40 rows being inserted and committed
        sink.wait(timeout=10)
        killed_at = await _committed_total(kafka_bootstrap, group)
        # the rest is produced only after the kill, so the sink cannot have committed everything, however fast
        assert len(warmup) < killed_at <= len(warmup) + len(first)

        await produce(kafka_bootstrap, topic, keyed(rest + after[:500]))  # while no sink runs
        sink = _start_sink(config, log)
        await produce(kafka_bootstrap, topic, keyed(after[500:]))
        end = await _end_total(kafka_bootstrap, topic, partitions)
        assert end == len(events)
        await _poll(lambda: _above(kafka_bootstrap, group, end - 1), 90, "the sink to catch up", sink)
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(timeout=30) == 0
    finally:
        if sink.poll() is None:
            os.killpg(sink.pid, signal.SIGKILL)
            sink.wait()

    client = get_client(settings.clickhouse, settings.data_dir)  # the sink is gone: chDB is ours now
    try:
        exact = sum(e.cost_usd for e in events)
        [(n, distinct)] = client.query("SELECT count(), uniqExact(event_id) FROM events").result_rows
        assert n == distinct == len(events)
        total = run_report(client, available_reports()["total_spend"])
        assert total.rows[0][-1] == exact  # the documented spend query
        by_team = run_report(client, available_reports()["spend_by_team"])
        assert sum(row[5] for row in by_team.rows) == exact
    finally:
        client.close()
    assert b"Traceback" not in log.read_bytes()


async def _above(bootstrap: str, group: str, threshold: int) -> bool:
    return await _committed_total(bootstrap, group) > threshold
