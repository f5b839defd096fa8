"""End-to-end: Kafka topics -> ClickHouseSink -> chDB, with exact money and every shipped report."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from clickhouse_kit import keyed, make_alerts, make_events, make_outcomes, make_sink_topics, produce, sink_settings
from spendwatch.metrics import REGISTRY
from spendwatch.schemas.pricing import price_tier
from spendwatch.sinks.clickhouse.report import available_reports, run_report
from spendwatch.sinks.clickhouse.service import ClickHouseSink

pytestmark = pytest.mark.kafka


async def test_sink_writes_events_outcomes_alerts_exactly(tmp_path, kafka_bootstrap, unique_prefix):
    settings = sink_settings(tmp_path, kafka_bootstrap, unique_prefix)
    await make_sink_topics(settings)
    topics = settings.kafka.topics
    events, outcomes, alerts = make_events(800), make_outcomes(), make_alerts()
    await produce(kafka_bootstrap, topics.events, keyed(events) + [(b"k", b"{not json")])
    await produce(kafka_bootstrap, topics.outcomes, keyed(outcomes))
    await produce(kafka_bootstrap, topics.alerts, keyed(alerts))

    rows_metric_before = REGISTRY.get_sample_value("spendwatch_clickhouse_rows_written_total", {"table": "events"}) or 0
    sink = ClickHouseSink(settings)
    await sink.start()
    try:
        expected_rows = len(events) + len(outcomes) + len(alerts)
        await sink.wait_for(lambda s: s.rows_written >= expected_rows, timeout=60)
        rows_metric = REGISTRY.get_sample_value("spendwatch_clickhouse_rows_written_total", {"table": "events"})
        assert rows_metric - rows_metric_before == len(events)

        exact = sum(e.cost_usd for e in events)
        assert float(sum(float(e.cost_usd) for e in events)) != exact  # a float sum would be wrong here
        [(requests, spend)] = await sink.query("SELECT count(), sum(cost_usd) FROM events")
        assert (requests, spend) == (len(events), exact)

        by_team = dict(await sink.query(
            "SELECT subject, sum(cost_usd) FROM spend_hourly WHERE dimension = 'team' GROUP BY subject"))
        for team in {e.team or "" for e in events}:
            assert by_team[team] == sum(e.cost_usd for e in events if (e.team or "") == team)
        [(daily,)] = await sink.query("SELECT sum(cost_usd) FROM spend_daily WHERE dimension = 'all'")
        assert daily == exact
        tiers = dict(await sink.query(
            "SELECT subject, sum(requests) FROM spend_hourly WHERE dimension = 'model_tier' GROUP BY subject"))
        assert tiers["economy"] == sum(1 for e in events if price_tier(e.model, e.provider) == "economy") > 0
        assert sum(tiers.values()) == len(events)
        [(failures, cache_read)] = await sink.query(
            "SELECT sum(failures), sum(cache_read_tokens) FROM spend_hourly WHERE dimension = 'key'")
        assert failures == sum(1 for e in events if e.status == "failure")
        assert cache_read == sum(e.cache_read_tokens for e in events)

        sessions = dict(await sink.query("SELECT session_id, sum(cost_usd) FROM session_totals GROUP BY session_id"))
        assert sessions["sess-3"] == sum(e.cost_usd for e in events if e.session_id == "sess-3")

        episodes = {row[0]: row[1:] for row in await sink.query(
            "SELECT dedup_key, opened_at, resolved_at, duration_s, repeats FROM alert_episodes")}
        opened, resolved, duration, repeats = episodes["spend_spike:key:key-1:1"]
        assert (duration, repeats) == (95 * 60, 1)
        assert resolved - opened == timedelta(minutes=95)
        assert episodes["session_burn:session:sess-3:1"][1] is None  # still open

        [(n_outcomes,)] = await sink.query("SELECT count() FROM outcomes WHERE kind = 'task_accepted'")
        assert n_outcomes == len(outcomes)

        results = {}
        for report in available_reports().values():
            results[report.name] = await sink.writer.call(lambda c, r=report: run_report(c, r))
        assert results["total_spend"].rows[0][-1] == exact
        by_model = {r[0]: r[results["spend_by_model"].columns.index("spend_usd")]
                    for r in results["spend_by_model"].rows}
        assert by_model["gpt-4o-mini"] == sum(e.cost_usd for e in events if e.model == "gpt-4o-mini")
        columns = results["cost_per_outcome"].columns
        per_outcome = {r[0]: dict(zip(columns, r, strict=True)) for r in results["cost_per_outcome"].rows}
        key0_spend = sum(e.cost_usd for e in events if e.api_key_hash == "key-0")
        assert per_outcome["key-0"]["usd_per_outcome"] == key0_spend / 3  # key-0 produced 3 of the 6 outcomes
        p50, p90 = results["session_cost_quantiles"].rows[0][1:3]
        assert Decimal(0) < p50 <= p90
        [detector_row] = [r for r in results["alerts_by_detector"].rows if r[0] == "spend_spike"]
        assert detector_row[1:3] == (1, 0)
    finally:
        await sink.stop()

    letters = await _read_all(kafka_bootstrap, topics.dead_letters, 1)
    assert letters[0]["stage"] == "clickhouse" and letters[0]["error_type"] == "validation"
    assert letters[0]["source_topic"] == topics.events


async def test_restart_after_clean_stop_neither_rereads_nor_skips(tmp_path, kafka_bootstrap, unique_prefix):
    """Group-assigned (as against a ClickHouse server): the rebalance listener positions the partitions."""
    settings = sink_settings(tmp_path, kafka_bootstrap, unique_prefix, partition_assignment="group")
    await make_sink_topics(settings, event_partitions=2)
    first, second = make_events(300), make_events(200, start=300)
    await produce(kafka_bootstrap, settings.kafka.topics.events, keyed(first))
    sink = ClickHouseSink(settings)
    await sink.start()
    await sink.wait_for(lambda s: s.rows_written >= len(first), timeout=60)
    await sink.stop()

    await produce(kafka_bootstrap, settings.kafka.topics.events, keyed(second))
    sink = ClickHouseSink(settings)
    await sink.start()
    try:
        await sink.wait_caught_up(timeout=60)
        assert sink.rows_written == len(second)
        [(n, spend, distinct)] = await sink.query(
            "SELECT count(), sum(cost_usd), uniqExact(event_id) FROM events")
        assert (n, distinct) == (500, 500)
        assert spend == sum(e.cost_usd for e in first + second)
        assert sink.records_skipped == 0
    finally:
        await sink.stop()


async def _read_all(bootstrap: str, topic: str, n: int) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        out: list[dict] = []
        async with asyncio.timeout(30):
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=500)
                out += [orjson.loads(r.value) for records in batch.values() for r in records]
        return out
    finally:
        await consumer.stop()
