"""Sizing benchmark: events/s of one stream worker and its memory per 10k keys.

    python -m spendwatch.benchmarks.sizing [--events 40000] [--keys 10000] [--partitions 4]

Runs the real thing on this machine: the embedded broker and one ``spendwatch worker``
(a child process, exactly-once, default detectors). ``--events`` canonical events over
``--keys`` distinct API keys (each key its own user and sessions) are produced to the raw
topic first; the worker then starts and works through the backlog, and the figures come
from its own ``/metrics`` (``spendwatch_events_in_total``, ``process_resident_memory_bytes``).

The reference, measured in the same run on the same broker: a plain aiokafka consumer
reading the same number of messages and decoding each JSON value, i.e. the least any
consumer must do. docs/operations.md quotes these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from spendwatch.broker import EmbeddedBroker, create_topics, free_port
from spendwatch.demo import Child, demo_config, scrape, wait_ready, write_config

MODELS = ("claude-sonnet-4-5", "gpt-5", "gpt-5-mini", "gemini-2.5-flash")


def events(n: int, keys: int) -> list[tuple[bytes, bytes]]:
    """(key, canonical JSON) of ``n`` events spread evenly over ``keys`` keys and 7 days."""
    start = datetime(2026, 11, 2, tzinfo=UTC)
    out = []
    for i in range(n):
        k = i % keys
        at = start + timedelta(seconds=i * 7 * 86400 / n)
        record = {
            "event_id": f"bench-{i}", "event_time": at.isoformat(), "gateway": "bench",
            "api_key_hash": f"key-{k:06d}", "user": f"user-{k:06d}", "team": f"team-{k % 40}",
            "session_id": f"s-{k}-{i // (keys * 3)}", "model": MODELS[i % len(MODELS)],
            "input_tokens": 2000, "cache_read_tokens": 1200, "output_tokens": 300, "cost_usd": "0.004210",
        }
        out.append((record["api_key_hash"].encode(), orjson.dumps(record)))
    return out


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def reference_consumer(bootstrap: str, topic: str, n: int) -> float:
    """Seconds a plain consumer takes to read and decode ``n`` messages."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        started, seen = time.perf_counter(), 0
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    orjson.loads(r.value)
                    seen += 1
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def bench(n: int, keys: int, partitions: int, work: Path) -> None:
    records = events(n, keys)
    with EmbeddedBroker(work / "kafka") as broker:
        port = free_port()
        config = work / "spendwatch.yaml"
        settings = write_config(config, demo_config(work, broker.bootstrap_servers, port, partitions))
        topics = settings.kafka.topics
        await create_topics(broker.bootstrap_servers, {topics.raw: partitions, "bench-reference": partitions})
        await produce(broker.bootstrap_servers, "bench-reference", records)
        ref_s = await reference_consumer(broker.bootstrap_servers, "bench-reference", n)
        await produce(broker.bootstrap_servers, topics.raw, records)

        worker = Child("worker", [sys.executable, "-m", "spendwatch.streams.worker", "--config", str(config),
                                  "--loglevel", "warning"], work / "worker.log").start()
        try:
            await wait_ready(f"http://127.0.0.1:{port}/readyz", worker, 300)
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            ready_at = time.perf_counter()
            rss_ready = await rss(metrics_url)
            while (progress := await scrape(metrics_url, attempts=60)).parsed < n:
                worker.check()
                await asyncio.sleep(0.2)  # polling the worker's metrics: it offers no event to await
            parsed_s = time.perf_counter() - ready_at
            last, quiet_since = progress, time.perf_counter()
            while time.perf_counter() - quiet_since < settings.streams.idle_release_s + 3:
                await asyncio.sleep(0.5)
                if (now := await scrape(metrics_url, attempts=60)) != last:
                    last, quiet_since = now, time.perf_counter()
            detected_s = quiet_since - ready_at
            rss_done = await rss(metrics_url)
        finally:
            worker.stop()

    print(f"events {n:,}, keys {keys:,}, partitions {partitions}, one worker")
    print(f"reference (plain consumer, decode only): {n / ref_s:>9,.0f} events/s")
    print(f"worker, parse stage (events -> topics):  {n / parsed_s:>9,.0f} events/s  "
          f"({ref_s / parsed_s:.2f}x the reference)")
    print(f"worker, end to end (detectors done):     {n / detected_s:>9,.0f} events/s  "
          f"({ref_s / detected_s:.2f}x the reference)")
    grown = max(0.0, rss_done - rss_ready)
    print(f"worker RSS: {rss_ready / 2**20:,.0f} MiB at start, {rss_done / 2**20:,.0f} MiB after "
          f"-> {grown / 2**20 / keys * 10_000:,.0f} MiB per 10k keys (each key with its own user and sessions)")
    print(f"alerts emitted: {last.alerts}, dead letters: {last.dead}")


async def rss(metrics_url: str) -> float:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    text = await asyncio.to_thread(lambda: urlopen(metrics_url, timeout=5).read().decode())  # noqa: S310
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "process_resident_memory_bytes":
                return s.value
    raise RuntimeError("the worker's /metrics has no process_resident_memory_bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spendwatch-bench-"))
    try:
        asyncio.run(bench(args.events, args.keys, args.partitions, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
