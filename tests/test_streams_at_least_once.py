"""``streams.processing_guarantee: at_least_once`` (brokers without transactions): the same pipeline, no transactions."""

from __future__ import annotations

import orjson
import pytest

from streams_kit import (
    WorkerProcess,
    alert_identity,
    backtest_alerts,
    consume_until,
    expected_applied,
    incident_events,
    isolated_pipeline,
    produce,
    run,
    wait_applied,
)

pytestmark = [pytest.mark.kafka]

PARTITIONS = 4


def test_at_least_once_worker_produces_events_state_and_the_backtests_pages(kafka_broker, tmp_path) -> None:
    pipeline = isolated_pipeline(kafka_broker.bootstrap_servers, tmp_path, partitions=PARTITIONS,
                                 processing_guarantee="at_least_once", allowed_lateness_s=7 * 86400, idle_release_s=2)
    bootstrap, topics, changelog = pipeline["bootstrap"], pipeline["topics"], pipeline["changelog"]
    events = incident_events()
    ids = {e["event_id"] for e in events}

    with WorkerProcess(pipeline["config"], tmp_path) as worker:
        run(produce(bootstrap, topics["raw"], [orjson.dumps(e) for e in events]))
        out = run(consume_until(bootstrap, topics["events"], lambda m: {e["event_id"] for e in m} >= ids,
                                timeout=120, alive=worker.alive))
        run(wait_applied(bootstrap, changelog, expected_applied(events, PARTITIONS), timeout=120,
                         alive=worker.alive))
        # without transactions the state and the alerts of one flush become visible one after the other
        expected = backtest_alerts(events)
        alerts = run(consume_until(bootstrap, topics["alerts"], lambda m: len(m) >= len(expected), timeout=60,
                                   alive=worker.alive))
        log = worker.log()

    assert len(out) == len(ids)  # no crash: each event once
    assert {a["action"] for a in expected} >= {"trigger", "resolve"}
    assert sorted(map(alert_identity, alerts)) == sorted(map(alert_identity, expected))
    assert "Traceback" not in log
