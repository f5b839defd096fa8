"""A gateway's retry (the same event_id again) is dropped by the worker, not counted twice."""

from __future__ import annotations

import urllib.request

import orjson
import pytest

from streams_kit import (
    WorkerProcess,
    consume_until,
    expected_applied,
    isolated_pipeline,
    produce,
    run,
    steady_traffic,
    wait_applied,
)

pytestmark = [pytest.mark.kafka]

PARTITIONS = 4


def test_a_retried_event_reaches_the_events_topic_and_the_detectors_once(kafka_broker, tmp_path) -> None:
    pipeline = isolated_pipeline(kafka_broker.bootstrap_servers, tmp_path, partitions=PARTITIONS)
    bootstrap, topics, changelog = pipeline["bootstrap"], pipeline["topics"], pipeline["changelog"]
    originals = steady_traffic(5, 6, 20)  # 600 events, 5 keys
    # every 7th event is sent again a few records later (a client retrying after a lost acknowledgement);
    # each key's last event is an original, so once it is out every copy before it has been handled
    messages: list[dict] = []
    for i, e in enumerate(originals):
        messages.append(e)
        if i % 7 == 3 and i < len(originals) - 20:
            messages.append(originals[i - 2])
    copies = len(messages) - len(originals)
    assert copies > 50
    unique_ids = {e["event_id"] for e in originals}

    with WorkerProcess(pipeline["config"], tmp_path) as worker:
        # keyed by API key, as the ingest service keys them: a copy lands on its original's raw partition
        run(produce(bootstrap, topics["raw"], [orjson.dumps(m) for m in messages],
                    key=lambda n: messages[n - 1]["api_key_hash"].encode()))
        events = run(consume_until(bootstrap, topics["events"], lambda m: {e["event_id"] for e in m} >= unique_ids,
                                   timeout=90, alive=worker.alive))
        table = run(wait_applied(bootstrap, changelog, expected_applied(originals, PARTITIONS), timeout=90,
                                 alive=worker.alive))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10).read().decode()

    assert len(events) == len(unique_ids), f"{len(events) - len(unique_ids)} copies reached the events topic"
    assert table  # the detectors applied each original once (wait_applied fails on more)
    [dropped] = [line for line in metrics.splitlines() if line.startswith("spendwatch_duplicate_records_total{")]
    assert float(dropped.rsplit(" ", 1)[1]) == copies


def test_a_retry_after_a_crash_is_dropped_by_the_restarted_worker(kafka_broker, tmp_path) -> None:
    """The ids are committed with the raw offsets: a worker restarted after kill -9 still knows them."""
    from collections import Counter
    from datetime import timedelta

    from streams_kit import T0, read_all

    pipeline = isolated_pipeline(kafka_broker.bootstrap_servers, tmp_path, partitions=PARTITIONS,
                                 static_membership=True, commit_interval_s=0.3)
    bootstrap, topics, changelog = pipeline["bootstrap"], pipeline["topics"], pipeline["changelog"]
    before = steady_traffic(5, 6, 20)  # 600 events, 5 keys
    after = steady_traffic(5, 2, 20, start=T0 + timedelta(hours=6), first_id=10**6)
    retries = before[-40:]  # the gateway re-sends the last calls it made before the worker died

    def send(events: list[dict]) -> None:
        run(produce(bootstrap, topics["raw"], [orjson.dumps(e) for e in events],
                    key=lambda n: events[n - 1]["api_key_hash"].encode()))

    first = WorkerProcess(pipeline["config"], tmp_path, "first").start()
    try:
        send(before)
        run(wait_applied(bootstrap, changelog, expected_applied(before, PARTITIONS), timeout=90, alive=first.alive))
    finally:
        first.kill()

    second = WorkerProcess(pipeline["config"], tmp_path, "second", web_port=first.web_port).start()
    try:
        send(retries + after)
        run(wait_applied(bootstrap, changelog, expected_applied(before + after, PARTITIONS), timeout=120,
                         alive=second.alive))
        events = run(read_all(bootstrap, topics["events"]))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{second.web_port}/metrics", timeout=10).read().decode()
    except Exception:
        print(first.log()[-5000:], second.log()[-8000:])
        raise
    finally:
        second.stop()

    assert Counter(e["event_id"] for e in events) == Counter(e["event_id"] for e in before + after)
    [dropped] = [line for line in metrics.splitlines() if line.startswith("spendwatch_duplicate_records_total{")]
    assert float(dropped.rsplit(" ", 1)[1]) == len(retries)
