"""The stream worker's own /metrics, scraped over HTTP while real events flow through it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from streams_kit import WorkerProcess, event, produce, write_config

from spendwatch.broker import create_topics
from spendwatch.demo import WorkerProgress

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

#: Families the worker itself must serve (the rest of spendwatch.metrics belongs to other roles).
WORKER_FAMILIES = {"spendwatch_events_in", "spendwatch_dead_letters", "spendwatch_consumer_lag_messages",
                   "spendwatch_detector_batch_seconds", "spendwatch_alerts", "process_resident_memory_bytes"}


async def _scrape(session: aiohttp.ClientSession, url: str) -> str | None:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return await resp.text() if resp.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


async def test_worker_metrics_count_the_events_that_flow_through_it(tmp_path, kafka_bootstrap, unique_prefix):
    config_path, config = write_config(tmp_path, kafka_bootstrap, unique_prefix)
    topics = config["kafka"]["topics"]
    await create_topics(kafka_bootstrap, {topics[name]: 4 for name in ("raw", "events", "outcomes", "alerts",
                                                                       "dead_letters")})
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    good = [event(i, f"key-{i % 3}", t0 + timedelta(seconds=i), "0.05") for i in range(40)]
    with WorkerProcess(config_path, tmp_path) as worker:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{worker.web_port}"
            deadline = time.monotonic() + 120
            while (before := await _scrape(session, f"{url}/metrics")) is None:  # the worker is starting
                assert worker.alive(), worker.log()[-3000:]
                assert time.monotonic() < deadline, "the worker never served /metrics"
                await asyncio.sleep(0.2)
            assert WORKER_FAMILIES <= {f.name for f in text_string_to_metric_families(before)}
            start = WorkerProgress.parse(before)

            await produce(kafka_bootstrap, topics["raw"], [*good, b"{not json", {"hello": "world"}])
            while True:  # poll the worker's own figures: nothing else says when it has parsed them
                text = await _scrape(session, f"{url}/metrics")
                now = WorkerProgress.parse(text) if text else start
                if now.ok - start.ok >= len(good) and now.dead - start.dead >= 2 \
                        and now.detector_batches > start.detector_batches:
                    break
                assert worker.alive(), worker.log()[-3000:]
                assert time.monotonic() < deadline, f"metrics never counted the events: {now}"
                await asyncio.sleep(0.3)
            assert (now.ok - start.ok, now.dead - start.dead) == (len(good), 2)
            async with session.get(f"{url}/readyz") as ready:
                assert ready.status == 200
