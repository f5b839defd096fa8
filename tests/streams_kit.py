"""Helpers for the stream tests: worker subprocesses, producing and consuming with aiokafka."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import yaml

from spendwatch.broker import free_port

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)


def event(i: int, key: str, at: datetime, cost: str | Decimal, *, team: str | None = None,
          model: str = "gpt-4o", session: str | None = None) -> dict[str, Any]:
    """A canonical GatewayEvent as a JSON-ready dict."""
    data: dict[str, Any] = {
        "event_id": f"e{i}", "event_time": at.isoformat(), "gateway": "litellm", "api_key_hash": key,
        "model": model, "provider": "openai", "input_tokens": 1000, "output_tokens": 200,
        "cost_usd": str(cost),
    }
    if team:
        data["team"] = team
    if session:
        data["session_id"] = session
    return data


def steady_traffic(keys: int, hours: int, per_hour: int, *, start: datetime = T0, cost: str = "0.05",
                   first_id: int = 0) -> list[dict[str, Any]]:
    """Evenly spread, event-time ordered traffic over ``keys`` keys."""
    out = []
    step = timedelta(hours=1) / per_hour
    i = first_id
    for n in range(hours * per_hour):
        at = start + n * step
        for k in range(keys):
            out.append(event(i, f"key-{k}", at + timedelta(milliseconds=k), cost, team=f"team-{k % 3}"))
            i += 1
    return out


def incident_events() -> list[dict[str, Any]]:
    """Four days of steady spend on 6 keys, then key-1 burns $3,000 within an hour, then a day of normal traffic."""
    events = steady_traffic(6, 24 * 4, 3, cost="0.40")
    spike_at = T0 + timedelta(days=4)
    # 300 new $10 sessions: a rise of ordinary traffic (spend_spike's), no single session burning (session_burn's)
    events += [event(900_000 + i, "key-1", spike_at + timedelta(seconds=12 * i), "10", team="team-1",
                     session=f"s{i}") for i in range(300)]
    events += steady_traffic(6, 28, 3, cost="0.40", start=spike_at + timedelta(hours=1), first_id=1_000_000)
    return events


def backtest_alerts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``spendwatch backtest`` pages for these events, as alert JSON."""
    from spendwatch.config import Settings
    from spendwatch.detectors.backtest import run_backtest
    from spendwatch.detectors.config import DetectorsConfig
    from spendwatch.streams.pipeline import RawMessage, parse_batch

    records = parse_batch((RawMessage(orjson.dumps(e), "raw", 0, i) for i, e in enumerate(events)),
                          Settings().adapters).records
    return [orjson.loads(a.model_dump_json()) for a in run_backtest(records, DetectorsConfig())]


def alert_identity(alert: dict[str, Any]) -> tuple:
    """What must be equal for two alerts to be the same page."""
    return (alert["dedup_key"], alert["action"], alert["fired_at"], alert["summary"], alert["observed"])


def write_config(tmp_path: Path, bootstrap: str, prefix: str, **streams: Any) -> tuple[Path, dict[str, Any]]:
    """A spendwatch YAML config isolating this test: unique topics and app id, memory store."""
    topics = {name: f"{prefix}-{name}" for name in ("raw", "events", "outcomes", "alerts", "dead_letters", "routed")}
    config = {
        "data_dir": str(tmp_path / "data"),
        "kafka": {"bootstrap_servers": bootstrap, "topics": topics, "broker": "noida-db"},
        "streams": {"app_id": f"{prefix}-app", "store": "memory://", "partitions": 4, "commit_interval_s": 0.5,
                    "batch_within_s": 0.05, "allowed_lateness_s": 0, "idle_release_s": 0.5,
                    "session_timeout_s": 6, "heartbeat_interval_s": 1, "rebalance_timeout_s": 10, **streams},
    }
    path = tmp_path / f"spendwatch-{prefix}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def isolated_pipeline(bootstrap: str, tmp_path: Path, *, partitions: int = 4, **streams: Any) -> dict[str, Any]:
    """An isolated pipeline: a config with unique topics and app id, and every topic created up front.

    Created here so that following the changelog cannot auto-create it first (with one partition).
    Returns ``bootstrap``, ``config`` (the YAML's path), ``topics``, ``changelog`` and ``tmp``.
    """
    import uuid

    from spendwatch.broker import create_topics

    prefix = f"t{uuid.uuid4().hex[:10]}"
    config_path, config = write_config(tmp_path, bootstrap, prefix, partitions=partitions, **streams)
    topics = config["kafka"]["topics"]
    changelog = f"{config['streams']['app_id']}-detector-state-changelog"
    asyncio.run(create_topics(bootstrap, {name: partitions for name in [*topics.values(), changelog]},
                              compacted={changelog}))
    return {"bootstrap": bootstrap, "config": config_path, "topics": topics, "changelog": changelog, "tmp": tmp_path}


class WorkerProcess:
    """``python -m spendwatch.streams.worker`` as a child process, logging to a file."""

    def __init__(self, config_path: Path, log_dir: Path, name: str = "worker", web_port: int | None = None) -> None:
        self.config_path = config_path
        self.web_port = web_port or free_port()
        self.log_path = log_dir / f"{name}-{self.web_port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, *os.environ.get("SW_WORKER_CMD", "-m spendwatch.streams.worker").split(), "--config", str(self.config_path),
             "--web-port", str(self.web_port), "--loglevel", os.environ.get("SW_TEST_LOGLEVEL", "info")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30) -> None:
        if not self.alive():
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def produce(bootstrap: str, topic: str, values: Iterable[bytes | dict], *,
                  key: Callable[[int], bytes | None] | None = None) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    n = 0
    try:
        futures = []
        for n, value in enumerate(values, 1):
            data = value if isinstance(value, bytes) else orjson.dumps(value)
            futures.append(await producer.send(topic, data, key=key(n) if key else None))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


async def consume_until(bootstrap: str, topic: str, done: Callable[[list[Any]], bool], *, timeout: float,
                        decode: Callable[[bytes], Any] = orjson.loads, read_committed: bool = True,
                        alive: Callable[[], bool] | None = None) -> list[Any]:
    """Read ``topic`` from the beginning until ``done(messages)`` or the deadline; returns the messages.

    ``alive`` (e.g. a worker's liveness) makes the wait fail fast when the worker died.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted", group_id=None,
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(out):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: condition not met within {timeout}s; got {len(out)} messages")
            if alive is not None and not alive():
                raise RuntimeError(f"worker died while waiting on {topic}")
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                out.extend(decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@contextlib.contextmanager
def workers(*procs: WorkerProcess):
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


async def read_table(bootstrap: str, changelog: str) -> dict[bytes, bytes]:
    """The committed content of a compacted changelog topic: the latest value of every key."""
    return {key: value for key, value in await read_topic(bootstrap, changelog)}


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every committed message of ``topic`` up to its current end, decoded as JSON."""
    return [orjson.loads(value) for _, value in await read_topic(bootstrap, topic)]


async def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of every committed message up to the topic's current end (read_committed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    changelog = topic

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed", group_id=None)
    await consumer.start()
    table: list[tuple[bytes, bytes]] = []
    try:
        partitions = consumer.partitions_for_topic(changelog)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(changelog) or set()
        tps = [TopicPartition(changelog, p) for p in partitions]
        if not tps:
            return table
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(*remaining, timeout_ms=200)
            for tp, records in batches.items():
                table.extend((r.key, r.value) for r in records)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return table


def applied_records(table: dict[bytes, bytes]) -> int:
    """Records applied by all partitions' detectors, from their committed metadata."""
    return sum(orjson.loads(v)["applied"] for k, v in table.items() if k.startswith(b"\x00partition:"))


def expected_applied(events: Iterable[dict], partitions: int) -> int:
    """How many (record, partition) entries the detect stage must apply for these events."""
    from spendwatch.config import Settings
    from spendwatch.detectors.engine import Engine
    from spendwatch.streams.pipeline import RawMessage, parse_batch, state_partition

    settings = Settings()
    engine = Engine(settings.detectors)
    parsed = parse_batch((RawMessage(orjson.dumps(e), "raw", 0, i) for i, e in enumerate(events)), settings.adapters)
    return sum(len({state_partition(k, partitions) for k in engine.routes(r)}) for r in parsed.records)


async def wait_table(bootstrap: str, changelog: str, done: Callable[[dict[bytes, bytes]], bool], *,
                     timeout: float, alive: Callable[[], bool] | None = None,
                     isolation_level: str = "read_committed",
                     progress: Callable[[dict[bytes, bytes]], str] | None = None) -> dict[bytes, bytes]:
    """Follow the state table until ``done(table)``; ``read_uncommitted`` sees what a worker sent before it commits.

    ``progress(table)`` says how far it got when the timeout expires. The reader relies on
    :mod:`spendwatch.broker_quirks` (installed in this process by the embedded broker
    fixture): without it, noida-db's stale aborted transactions make a long-lived
    read_committed consumer skip a restarted worker's commits.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(changelog, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level=isolation_level, group_id=None,
                                metadata_max_age_ms=1000)
    await consumer.start()
    table: dict[bytes, bytes] = {}
    deadline = time.monotonic() + timeout
    try:
        while not done(table):
            if alive is not None and not alive():
                raise RuntimeError("worker died")
            if time.monotonic() > deadline:
                reached = progress(table) if progress else "the state table did not reach the expected condition"
                raise TimeoutError(f"{reached} within {timeout}s")
            batches = await consumer.getmany(timeout_ms=500)  # returns as soon as a commit is readable
            for records in batches.values():
                for r in records:
                    table[r.key] = r.value
        return table
    finally:
        await consumer.stop()


async def wait_applied(bootstrap: str, changelog: str, expected: int, *, timeout: float,
                       alive: Callable[[], bool] | None = None, at_least: int | None = None) -> dict[bytes, bytes]:
    """Follow the committed state until the detectors applied ``expected`` records; fail if ever more.

    With ``at_least``, return as soon as that many are applied (to act mid-stream).
    """
    def done(table: dict[bytes, bytes]) -> bool:
        applied = applied_records(table)
        if applied > expected:
            raise AssertionError(f"{applied} records applied, more than the {expected} produced: counted twice")
        return applied == expected or (at_least is not None and applied >= at_least)

    return await wait_table(bootstrap, changelog, done, timeout=timeout, alive=alive,
                            progress=lambda table: f"only {applied_records(table)} of {expected} records applied")
