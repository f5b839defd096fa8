"""Chaos: the default worker settings (RocksDB store, dynamic membership, exactly once) through repeated kill -9.

Events stream in while the worker is killed with SIGKILL and restarted under the same name, as a
pod would be: each incarnation is killed at a random (seeded) moment once it has committed some
of its chunk, so the kill lands mid-work (parse, detect, commit, or the local store write after
a commit). At the end:

* ClickHouse (chDB, fed by the real sink) holds every event exactly once, with the exact dollars;
* the detectors' committed state counted every event once (each key's spend is exact);
* every runaway call paged once: one trigger per episode in the alerts topic, delivered once to
  (local fake) PagerDuty and once to Slack, no duplicate page.

``SW_CHAOS_KILLS`` and ``SW_CHAOS_SEED`` change the kill count and the seed (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from decimal import Decimal

import pytest
from paging_fakes import ROUTING_KEY, FakePagerDuty, FakeSlack
from test_streams_recovery import assert_no_duplicate_pages, key_spend_micros, produced_micros, traffic

from spendwatch.config import Settings
from spendwatch.sinks.clickhouse.config import ClickHouseConfig
from spendwatch.sinks.clickhouse.service import ClickHouseSink
from spendwatch.sinks.paging.config import PagingConfig
from spendwatch.sinks.paging.service import PagerService
from spendwatch.streams.config import KafkaConfig, TopicsConfig

from streams_kit import (
    WorkerProcess,
    applied_records,
    expected_applied,
    isolated_pipeline,
    produce,
    read_all,
    read_table,
    wait_applied,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILLS = int(os.environ.get("SW_CHAOS_KILLS", "5"))
SEED = int(os.environ.get("SW_CHAOS_SEED", "16"))
PARTITIONS = 8  # streams.partitions' default

#: every streams setting at its default (streams_kit's test config shortens them), the store made explicit
DEFAULT_STREAMS = dict(store="rocksdb://", static_membership=False, commit_interval_s=1.0, batch_size=5000,
                       batch_within_s=0.2, allowed_lateness_s=30.0, idle_release_s=5.0, session_timeout_s=30.0,
                       heartbeat_interval_s=3.0, rebalance_timeout_s=60.0)


def sink_settings(pipeline: dict, tmp_path) -> Settings:
    t = pipeline["topics"]
    topics = TopicsConfig(events=t["events"], outcomes=t["outcomes"], alerts=t["alerts"], dead_letters=t["dead_letters"])
    return Settings(data_dir=tmp_path / "sink", kafka=KafkaConfig(bootstrap_servers=pipeline["bootstrap"], topics=topics),
                    clickhouse=ClickHouseConfig(consumer_group=f"{t['events']}-clickhouse", flush_interval_s=0.2))


def paging_config(slack: FakeSlack, pd: FakePagerDuty, name: str) -> PagingConfig:
    return PagingConfig.model_validate({
        "consumer_group": f"{name}-pager", "transactional_id": f"{name}-pager",
        "route": {"receiver": "owners", "group_by": ["..."], "group_wait": "0s", "group_interval": "0s",
                  "repeat_interval": "24h"},
        "receivers": [{
            "name": "owners",
            "pagerduty": [{"routing_key_env": "TEST_PD_KEY", "url": pd.enqueue_url}],
            "slack": [{"bot_token_env": "TEST_SLACK_TOKEN", "channel": "C0SPEND01", "api_url": slack.api_url}],
        }],
        "retry": {"initial_backoff": "10ms", "max_backoff": "50ms"},
    })


@contextlib.asynccontextmanager
async def running(*services):
    tasks = [asyncio.create_task(service.run()) for service in services]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_default_worker_survives_repeated_kill_9_exactly_once(kafka_bootstrap, tmp_path, monkeypatch) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    pipeline = await asyncio.to_thread(isolated_pipeline, kafka_bootstrap, tmp_path, partitions=PARTITIONS,
                                       **DEFAULT_STREAMS)
    bootstrap, topics, changelog = pipeline["bootstrap"], pipeline["topics"], pipeline["changelog"]
    runaways = tuple(sorted(rng.sample(range(1, 11), 4)))
    events = traffic(30, 12, 30, seed=SEED, spikes=runaways)
    chunks = [events[i::KILLS + 1] for i in range(KILLS + 1)]  # each chunk spans the whole event-time range
    chunks = [sorted(chunk, key=lambda e: e["event_time"]) for chunk in chunks]

    slack, pd = await FakeSlack().start(), await FakePagerDuty().start()
    monkeypatch.setenv("TEST_PD_KEY", ROUTING_KEY)
    monkeypatch.setenv("TEST_SLACK_TOKEN", slack.token)
    sink = ClickHouseSink(sink_settings(pipeline, tmp_path))
    pager_topics = TopicsConfig(alerts=topics["alerts"], dead_letters=topics["dead_letters"],
                                pager_log=f"{topics['alerts']}-pager-log")
    pager = PagerService(bootstrap, pager_topics, paging_config(slack, pd, topics["alerts"]),
                         alerts_partitions=PARTITIONS, poll_interval=0.1)
    await sink.start()
    worker = WorkerProcess(pipeline["config"], pipeline["tmp"], "w0").start()
    port, logs, kills = worker.web_port, [], 0
    try:
        async with running(pager):
            expected = expected_applied(events, PARTITIONS)
            for n, chunk in enumerate(chunks):
                before = applied_records(await read_table(bootstrap, changelog))
                await produce(bootstrap, topics["raw"], chunk)
                if n == KILLS:
                    break
                # this incarnation is up and committing; then a random point while it works through the chunk
                await wait_applied(bootstrap, changelog, expected, at_least=before + 1, timeout=120, alive=worker.alive)
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                assert worker.alive(), worker.log()[-5000:]
                worker.kill()
                kills += 1
                logs.append(worker)
                worker = WorkerProcess(pipeline["config"], pipeline["tmp"], f"w{n + 1}", web_port=port).start()
            table = await wait_applied(bootstrap, changelog, expected, timeout=240, alive=worker.alive)
            alerts = await read_all(bootstrap, topics["alerts"])
            triggers = {a["dedup_key"] for a in alerts if a["action"] == "trigger"}
            still_open = triggers - {a["dedup_key"] for a in alerts if a["action"] == "resolve"}
            await pd.wait_for(lambda: triggers <= {e["dedup_key"] for e in pd.events}, timeout=60)
            await sink.wait_for(lambda s: s.rows_written >= len(events), timeout=120)
            [(rows, distinct, dollars)] = await sink.query(
                "SELECT count(), uniqExact(event_id), sum(cost_usd) FROM events")
            await pager.drain(timeout=20)
    except Exception:
        for proc in [*logs, worker]:
            print(proc.log_path, proc.log()[-4000:])
        raise
    finally:
        worker.stop()
        await sink.stop()
        await slack.stop()
        await pd.stop()

    exact = sum(Decimal(e["cost_usd"]) for e in events)
    assert kills == KILLS
    assert rows == distinct == len(events), "an event is missing from ClickHouse or stored twice"
    assert dollars == exact
    assert key_spend_micros(table) == produced_micros(events)  # the detectors counted every event once
    assert_no_duplicate_pages(alerts)
    spikes = {a["subject"] for a in alerts if a["action"] == "trigger" and a["detector"] == "spend_spike"}
    assert spikes == {f"runaway-{n}" for n in runaways}
    # no page twice; every trigger episode paged once on each receiver, the ones that triggered and resolved
    # within one delivery window (a catch-up after a kill) as "fired and cleared"
    pd_triggers = Counter(e["dedup_key"] for e in pd.events if e["event_action"] == "trigger")
    assert set(pd_triggers.values()) == {1}, pd_triggers
    assert set(pd_triggers) == triggers
    assert len(slack.roots()) == len(pd_triggers)
    assert len(set(slack.notification_ids())) == len(slack.notification_ids())
    print(f"chaos: {kills} kill -9 survived, {len(events)} events, ${exact} exact in ClickHouse, "
          f"{len(pd_triggers)} of {len(triggers)} trigger episodes paged once ({len(still_open)} still open), "
          f"{time.monotonic() - started:.0f} s")
