"""``spendwatch bench``: the pipeline's throughput and alert latency against a plain consumer, same run.

1. Start the embedded broker (or use ``kafka.bootstrap_servers``), create fresh topics.
2. Produce ``--events`` realistic gateway events over ``--keys`` API keys
   (:mod:`spendwatch.traffic`) to the raw topic.
3. Reference: a plain aiokafka consumer reads and decodes them with orjson, three times; the
   reference is the median (``raw_consume_runs_events_per_s`` lists all three).
4. Pipeline: one worker (a ``spendwatch.streams.worker`` subprocess, exactly-once) processes
   the same backlog; throughput is taken from its committed progress (the per-partition
   ``applied`` counters in the state changelog, and the group's committed raw offsets), so it
   counts work that is durable: ``pipeline_events_per_s`` from the worker's ``/readyz``
   answering 200 (group joined, state recovered; the reference's consumer start is not timed
   either) until every record's detector state and every raw offset is committed, parse and
   detect included. ``--workers N`` runs N workers in one group instead, the clock starting
   when the first is ready;
   ``end_to_end_events_per_s`` from starting the worker process (Python and Faust startup
   too); ``worker_cpu_s`` is the CPU time the worker used until then, the figure least
   disturbed by other load on a shared machine.
5. Latency: with the worker caught up, live traffic is produced with one injected runaway
   call every quarter second; latency is the time from producing that event to reading its
   committed ``spend_spike`` page on the alerts topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson
import yaml

if TYPE_CHECKING:
    from spendwatch.config import Settings

#: The reorder window used by the benchmark (seconds of event time); reported in the output.
BENCH_LATENESS_S = 1.0
#: Reads of the backlog by the plain consumer; the reference is their median.
REFERENCE_RUNS = 3


def _generate(events: int, keys: int, seed: int = 1) -> list[bytes]:
    from spendwatch.traffic import Traffic, iter_json_lines

    traffic = Traffic(60, seed, None, "none", max(16, keys), 12)
    return list(islice(iter_json_lines(traffic=traffic), events))


def _expected_applied(lines: list[bytes], settings: Settings) -> dict[int, int]:
    """(record, partition) entries the detect stage applies for these events, per routed partition."""
    from spendwatch.detectors.engine import Engine
    from spendwatch.schemas.event import GatewayEvent
    from spendwatch.schemas.outcome import OutcomeEvent
    from spendwatch.streams.pipeline import state_partition

    engine = Engine(settings.detectors)
    partitions = settings.streams.partitions
    per_partition = dict.fromkeys(range(partitions), 0)
    for line in lines:
        data = orjson.loads(line)
        model = OutcomeEvent if "outcome_id" in data else GatewayEvent
        record = model.model_construct(**data)
        for partition in {state_partition(k, partitions) for k in engine.routes(record)}:
            per_partition[partition] += 1
    return per_partition


async def _produce(bootstrap: str, topic: str, values: list[bytes], options: dict[str, Any]) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **options, linger_ms=20, max_batch_size=512 * 1024,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        batch = []
        for value in values:
            batch.append(await producer.send(topic, value))
            if len(batch) >= 20_000:
                await asyncio.gather(*batch)
                batch = []
        await asyncio.gather(*batch)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def _raw_consume(bootstrap: str, topic: str, count: int, options: dict[str, Any]) -> float:
    """Seconds a plain consumer takes to read and decode ``count`` messages (the reference)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, **options, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    loads = orjson.loads
    seen = 0
    try:
        started = time.perf_counter()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for records in batches.values():
                for record in records:
                    loads(record.value)
                seen += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def _wait_ready(port: int, alive: Any, timeout: float) -> float:
    """When the worker's ``/readyz`` first answers 200 (group joined, state recovered): the pipeline's clock start."""
    from spendwatch.web import http_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        with contextlib.suppress(OSError):
            if http_status(f"http://127.0.0.1:{port}/readyz", timeout=5) == 200:
                return time.perf_counter()
        time.sleep(0.05)  # another process's readiness: nothing to await
    raise click.ClickException("the worker did not become ready")


async def _follow_progress(bootstrap: str, changelog: str, expected_by_partition: dict[int, int], timeout: float,
                           alive: Any, options: dict[str, Any], *, group_id: str, raw_topic: str, raw_partitions: int) -> float:
    """Follow the committed state until every record is applied and every raw message committed; returns that time.

    Both: the applied count alone misses the messages that update no state (a configuration
    with detectors turned off, records no detector wants), whose cost is the parse stage's.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    consumer = AIOKafkaConsumer(changelog, bootstrap_servers=bootstrap, **options, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed", max_partition_fetch_bytes=16 * 1024 * 1024)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await consumer.start()
    await admin.start()
    applied: dict[bytes, int] = {}
    expected = sum(expected_by_partition.values())
    raw_tps = [TopicPartition(raw_topic, p) for p in range(raw_partitions)]
    raw_end = await consumer.end_offsets(raw_tps)
    raw_left = sum(raw_end.values())
    deadline = time.monotonic() + timeout
    try:
        while True:
            total = sum(applied.values())
            if total >= expected:
                committed = await admin.list_consumer_group_offsets(group_id, partitions=raw_tps)
                raw_left = sum(max(0, end - committed[tp].offset if tp in committed else end)
                               for tp, end in raw_end.items())
                if not raw_left:
                    return time.perf_counter()
            if time.monotonic() > deadline or not alive():
                done_by_partition = {int(key.rpartition(b":")[2]): n for key, n in applied.items()}
                missing = {p: n - done_by_partition.get(p, 0) for p, n in sorted(expected_by_partition.items())}
                state = "exited" if not alive() else "still running"
                raise click.ClickException(
                    f"pipeline applied {total} of {expected} records and left {raw_left} raw offsets "
                    f"uncommitted before giving up (worker {state}); "
                    f"records missing per partition: { {p: n for p, n in missing.items() if n} }")
            # once the state is complete only the parse stage's last commit is awaited: look more often
            batches = await consumer.getmany(timeout_ms=200 if total < expected else 20)
            for records in batches.values():
                for r in records:
                    if r.key.startswith(b"\x00partition:"):
                        applied[r.key] = orjson.loads(r.value)["applied"]
    finally:
        await consumer.stop()
        await admin.close()


async def _latency(bootstrap: str, topics: Any, keys: int, start: datetime, incidents: int,
                   alive: Any, options: dict[str, Any]) -> list[float]:
    """Milliseconds from producing a runaway call to reading its committed page."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from spendwatch.streams import faust_internals

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **options, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    await faust_internals.force_metadata_update(consumer)
    tps = [TopicPartition(topics.alerts, p) for p in consumer.partitions_for_topic(topics.alerts) or ()]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **options, linger_ms=2)
    await producer.start()
    produced: dict[str, float] = {}
    latencies: dict[str, float] = {}

    async def read_alerts() -> None:
        while len(latencies) < incidents:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batches.values():
                for r in records:
                    alert = orjson.loads(r.value)
                    subject = alert.get("subject")
                    if alert.get("action") == "trigger" and subject in produced and subject not in latencies:
                        latencies[subject] = (now - produced[subject]) * 1000

    reader = asyncio.create_task(read_alerts())
    live_started = time.perf_counter()
    run = uuid.uuid4().hex[:6]
    n = 0
    try:
        injected = 0
        while not reader.done():
            elapsed = time.perf_counter() - live_started
            at = start + timedelta(seconds=elapsed)
            # background traffic (100 calls/s) on many keys keeps every partition's stream time moving
            for i in range(5):
                n += 1
                await producer.send(topics.raw, orjson.dumps({
                    "event_id": f"live-{run}-{n}", "event_time": at.isoformat(), "gateway": "litellm",
                    "api_key_hash": f"bench-live-{(n * 7919) % max(keys, 1)}", "model": "gpt-4o-mini",
                    "input_tokens": 500, "output_tokens": 100, "cost_usd": "0.0004"}))
            if injected < incidents and elapsed >= injected * 0.25:
                subject = f"bench-runaway-{run}-{injected}"
                meta = await (await producer.send(topics.raw, orjson.dumps({
                    "event_id": f"runaway-{run}-{injected}", "event_time": at.isoformat(), "gateway": "litellm",
                    "api_key_hash": subject, "model": "o3", "input_tokens": 10_000, "output_tokens": 2_000,
                    "cost_usd": "2500"})))
                del meta
                produced[subject] = time.perf_counter()
                injected += 1
            if elapsed > 60 or not alive():
                break
            await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await producer.stop()
        await consumer.stop()
    return sorted(latencies.values())


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far: robust to other load on a shared machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


def run_bench(settings: Settings, *, events: int, keys: int, incidents: int = 20, workers: int = 1,
              raw_config: dict | None = None, log: Any = print) -> dict[str, Any]:
    """Run the benchmark; returns the figures (see the module docstring).

    ``workers`` > 1 starts that many workers in one consumer group on the same backlog (the clock
    starts when the first is ready, so the group's rebalances as the others join are counted);
    ``worker_cpu_s`` is then their sum and ``peak_rss_mb`` their largest.
    """
    from spendwatch.broker import EmbeddedBroker, create_topics, free_port
    from spendwatch.kafka_security import client_options
    from spendwatch.streams.config import KafkaSecurityConfig, TopicsConfig

    work = Path(tempfile.mkdtemp(prefix="spendwatch-bench-"))
    broker = None
    procs: list[subprocess.Popen] = []
    try:
        bootstrap = settings.kafka.bootstrap_servers
        if not bootstrap:
            broker = EmbeddedBroker(work / "kafka").start()
            bootstrap = broker.bootstrap_servers
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        topics = TopicsConfig(**{name: f"{prefix}-{name}" for name in TopicsConfig.model_fields})
        streams = settings.streams.model_copy(update={
            "app_id": f"{prefix}-app", "store": "memory://", "allowed_lateness_s": BENCH_LATENESS_S,
            # the backlog's last second of event time waits in the reorder buffer until the partition is idle
            # this long; the default (5 s) would add its wait to every run's clock
            "idle_release_s": BENCH_LATENESS_S,
        })
        partitions = streams.partitions
        if not 1 <= workers <= partitions:
            raise click.ClickException(f"--workers must be between 1 and the partition count ({partitions})")
        changelog = f"{streams.app_id}-detector-state-changelog"
        # a configured broker is reached as the worker reaches it (kafka.security); the embedded one is plaintext
        security = settings.kafka.security if broker is None else KafkaSecurityConfig()
        options = client_options(security)
        asyncio.run(create_topics(bootstrap, {name: partitions for name in [*topics.model_dump().values(), changelog]},
                                  compacted={changelog}, client_options=options))
        config = dict(raw_config or {})
        config["kafka"] = {"bootstrap_servers": bootstrap, "topics": topics.model_dump(),
                           "broker": "noida-db" if broker is not None else settings.kafka.broker,
                           "security": security.model_dump(mode="json")}
        config["streams"] = streams.model_dump(mode="json")
        # the generated traffic has fixed dates (60 days from spendwatch generate's default start): all of it counts
        adapters = dict(config.get("adapters") or {})
        config["adapters"] = {**adapters, "event_time": {**adapters.get("event_time", {}), "enforce": False}}
        config_paths = []
        for i in range(workers):  # each worker its own data directory, as on separate nodes
            config_paths.append(work / f"bench-{i}.yaml")
            config_paths[-1].write_text(yaml.safe_dump({**config, "data_dir": str(work / f"data-{i}")}))
        bench_settings = settings.model_copy(update={"streams": streams})

        log(f"generating {events:,} events over {keys:,} keys...")
        lines = _generate(events, keys)
        expected = _expected_applied(lines, bench_settings)
        last_time = datetime.fromisoformat(orjson.loads(lines[-1])["event_time"].replace("Z", "+00:00"))
        log("producing...")
        produce_s = asyncio.run(_produce(bootstrap, topics.raw, lines, options))
        log("reference: plain aiokafka consumer + orjson...")
        # the median of a few reads: one read of the backlog takes a second or two, and a single one swings
        # with whatever else the machine does (2x between runs seen)
        raw_runs = [asyncio.run(_raw_consume(bootstrap, topics.raw, len(lines), options))
                    for _ in range(REFERENCE_RUNS)]
        raw_s = statistics.median(raw_runs)

        log("pipeline: one worker..." if workers == 1 else f"pipeline: {workers} workers...")
        ports = []
        for i, config_path in enumerate(config_paths):
            worker_log = open(work / f"worker-{i}.log", "ab")  # noqa: SIM115 - owned by the child
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "spendwatch.streams.worker", "--config", str(config_path),
                 "--web-port", str(port := free_port()), "--loglevel", "warning"],
                stdout=worker_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
            worker_log.close()
            ports.append(port)
        worker_started = time.perf_counter()

        def alive() -> bool:
            return all(proc.poll() is None for proc in procs)

        try:
            ready_t = min(_wait_ready(port, alive, timeout=120.0) for port in ports)
            done_t = asyncio.run(
                _follow_progress(bootstrap, changelog, expected, timeout=max(300.0, events / 200), alive=alive,
                                 options=options, group_id=streams.app_id, raw_topic=topics.raw,
                                 raw_partitions=partitions))
        except click.ClickException:
            for i in range(workers):
                sys.stderr.write((work / f"worker-{i}.log").read_text(errors="replace")[-5000:])
            raise
        cpu = [_cpu_seconds(proc.pid) for proc in procs]
        pipeline_eps = len(lines) / max(done_t - ready_t, 1e-9)
        log("latency: live traffic with injected runaway calls...")
        latencies = asyncio.run(_latency(bootstrap, topics, keys, last_time, incidents, alive, options))
        rss = [_peak_rss_mb(proc.pid) for proc in procs]
        raw_eps = len(lines) / raw_s
        return {
            "events": len(lines),
            "keys": keys,
            "partitions": partitions,
            "pipeline_events_per_s": round(pipeline_eps) if pipeline_eps else None,
            "raw_consume_events_per_s": round(raw_eps),
            "raw_consume_runs_events_per_s": [round(len(lines) / seconds) for seconds in raw_runs],
            "ratio": round(pipeline_eps / raw_eps, 4) if pipeline_eps else None,
            "end_to_end_events_per_s": round(len(lines) / (done_t - worker_started)),
            "workers": workers,
            "worker_cpu_s": round(sum(c or 0 for c in cpu), 1) if any(c is not None for c in cpu) else None,
            "worker_cpu_s_each": cpu,
            "latency_p50_ms": _percentile(latencies, 50),
            "latency_p99_ms": _percentile(latencies, 99),
            "incidents_injected": incidents,
            "incidents_paged": len(latencies),
            "peak_rss_mb": max((r for r in rss if r is not None), default=None),
            "peak_rss_mb_each": rss,
            "produce_events_per_s": round(len(lines) / produce_s),
            "processing_guarantee": streams.processing_guarantee,
            "commit_interval_s": streams.commit_interval_s,
            "allowed_lateness_s": streams.allowed_lateness_s,
            "idle_release_s": streams.idle_release_s,
            "broker": "configured" if settings.kafka.bootstrap_servers else "embedded",
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


@click.command("bench")
@click.option("--events", default=200_000, show_default=True, help="Gateway events to produce.")
@click.option("--keys", default=10_000, show_default=True, help="Distinct API keys in the traffic.")
@click.option("--incidents", default=20, show_default=True, help="Runaway calls injected to measure alert latency.")
@click.option("--workers", default=1, show_default=True,
              help="Workers in one consumer group (scale-out; at most streams.partitions).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="spendwatch YAML: kafka.bootstrap_servers (else the embedded broker), streams.*, detectors.*")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the figures.")
def bench(events: int, keys: int, incidents: int, workers: int, config_path: str | None, as_json: bool) -> None:
    """Benchmark the pipeline (one worker, or --workers N) against a plain aiokafka consumer, in the same run."""
    from spendwatch.config import load_settings

    settings = load_settings(config_path)
    raw = (yaml.safe_load(Path(config_path).read_text()) or {}) if config_path else {}
    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    result = run_bench(settings, events=events, keys=keys, incidents=incidents, workers=workers, raw_config=raw,
                       log=log)
    if as_json:
        click.echo(json.dumps(result))
        return
    for name, value in result.items():
        click.echo(f"{name:>26}  {value}")


if __name__ == "__main__":
    bench()
