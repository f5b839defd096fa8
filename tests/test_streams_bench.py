"""``spendwatch bench --json`` runs end to end and reports every figure (not how fast: that is the bench's job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FIELDS = ("pipeline_events_per_s", "raw_consume_events_per_s", "ratio", "latency_p50_ms", "latency_p99_ms",
          "peak_rss_mb", "keys")


@pytest.mark.parametrize("workers", [1, 2])
def test_bench_json_reports_the_figures(tmp_path: Path, workers: int) -> None:
    spendwatch = Path(sys.executable).with_name("spendwatch")
    done = subprocess.run([str(spendwatch), "bench", "--events", "20000", "--keys", "1000", "--json",
                           "--workers", str(workers)], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(FIELDS) <= set(figures)
    assert figures["workers"] == workers and len(figures["worker_cpu_s_each"]) == workers
    assert figures["worker_cpu_s"] == pytest.approx(sum(figures["worker_cpu_s_each"]), abs=0.11)
    assert figures["keys"] == 1000 and figures["events"] == 20000
    assert figures["raw_consume_events_per_s"] > 0 and figures["pipeline_events_per_s"] > 0
    runs = figures["raw_consume_runs_events_per_s"]  # the reference is the median of three reads
    assert len(runs) == 3 and sorted(runs)[1] == figures["raw_consume_events_per_s"]
    assert figures["ratio"] == pytest.approx(figures["pipeline_events_per_s"] / figures["raw_consume_events_per_s"],
                                             rel=0.05)
    assert figures["incidents_paged"] > 0 and figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert figures["peak_rss_mb"] > 0


def test_bench_clock_stops_only_once_every_raw_message_is_committed(kafka_bootstrap: str, make_topics,
                                                                    unique_prefix: str) -> None:
    """With every detector off nothing is applied: the clock waits for the parse stage's commits instead."""
    import asyncio

    import click
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from spendwatch.benchmarks.pipeline import _follow_progress
    from streams_kit import produce

    raw, changelog, group = f"{unique_prefix}-raw", f"{unique_prefix}-changelog", f"{unique_prefix}-app"
    make_topics({raw: 2, changelog: 2})
    asyncio.run(produce(kafka_bootstrap, raw, [b"{}"] * 3, key=lambda i: b"k"))

    def follow(alive: bool) -> float:
        return asyncio.run(_follow_progress(kafka_bootstrap, changelog, {0: 0, 1: 0}, timeout=0.0,
                                            alive=lambda: alive, options={}, group_id=group, raw_topic=raw,
                                            raw_partitions=2))

    with pytest.raises(click.ClickException, match=r"left [1-9]\d* raw offsets uncommitted"):
        follow(alive=False)

    async def commit_all() -> None:  # what the worker's group commits once the parse stage is done
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(raw, p) for p in range(2)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
        finally:
            await consumer.stop()

    asyncio.run(commit_all())
    assert follow(alive=False) > 0
