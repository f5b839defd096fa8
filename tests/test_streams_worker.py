"""The stream worker against the real (embedded) broker: end to end, dead letters, parity with the backtest.

One worker runs for the module: gateway events (with bad messages interleaved) are
produced to the raw topic, and the tests read what came out: canonical events, dead
letters, alerts (``read_committed``: only what the worker's transactions committed) and
the committed detector state.
"""

from __future__ import annotations

import random

import orjson
import pytest

from streams_kit import (
    T0,
    WorkerProcess,
    alert_identity,
    backtest_alerts,
    consume_until,
    event,
    expected_applied,
    incident_events,
    isolated_pipeline,
    produce,
    read_all,
    run,
    wait_applied,
)

pytestmark = [pytest.mark.kafka]

PARTITIONS = 4
BAD_MESSAGES = [
    b"{this is not json",
    orjson.dumps({"event_id": "x1", "gateway": "litellm"}),  # unknown format
    orjson.dumps({**event(10**9, "key-0", T0, "1"), "cost_usd": "-3"}),  # negative cost
    orjson.dumps({**event(10**9 + 1, "key-0", T0, "1"), "api_key_hash": None}),  # nobody to bill
    b"",
]


@pytest.fixture(scope="module")
def stream_run(kafka_broker, tmp_path_factory):
    """One worker; good events with bad messages interleaved; results read back from the topics."""
    # a reorder window wider than the skew between raw partitions: records are processed in event-time order
    pipeline = isolated_pipeline(kafka_broker.bootstrap_servers, tmp_path_factory.mktemp("streams"),
                                 partitions=PARTITIONS, allowed_lateness_s=7 * 86400, idle_release_s=2)
    bootstrap, topics, changelog = pipeline["bootstrap"], pipeline["topics"], pipeline["changelog"]

    good = incident_events()
    rng = random.Random(3)
    messages: list[bytes] = [orjson.dumps(e) for e in good]
    bad_at = sorted(rng.sample(range(len(messages)), len(BAD_MESSAGES)))
    for shift, (position, bad) in enumerate(zip(bad_at, BAD_MESSAGES, strict=True)):
        messages.insert(position + shift, bad)

    worker = WorkerProcess(pipeline["config"], pipeline["tmp"]).start()
    try:
        # keyed by nothing: the raw topic's partitions get arbitrary, interleaved slices of the traffic
        run(produce(bootstrap, topics["raw"], messages))
        table = run(wait_applied(bootstrap, changelog, expected_applied(good, PARTITIONS), timeout=150,
                                 alive=worker.alive))
        alerts = run(read_all(bootstrap, topics["alerts"]))
        events_out = run(consume_until(bootstrap, topics["events"], lambda m: len(m) >= len(good), timeout=60))
        dead = run(consume_until(bootstrap, topics["dead_letters"], lambda m: len(m) >= len(BAD_MESSAGES),
                                 timeout=30))
    except Exception:
        print(worker.log()[-20000:])
        raise
    finally:
        worker.stop()
    yield {"good": good, "bad_at": bad_at, "alerts": alerts, "events": events_out, "dead": dead, "table": table,
           "topics": topics, "log": worker.log()}


def test_end_to_end_gateway_events_become_alerts(stream_run) -> None:
    alerts = stream_run["alerts"]
    triggers = {(a["detector"], a["subject"]) for a in alerts if a["action"] == "trigger"}
    assert ("spend_spike", "key-1") in triggers
    spike = next(a for a in alerts if a["detector"] == "spend_spike" and a["action"] == "trigger")
    assert spike["scope"] == "key" and spike["observed"] > 3 * (spike["expected"] or 0) > 0 and spike["root_cause"]
    # every good event came out once, canonical, keyed by its key scope
    out_ids = [e["event_id"] for e in stream_run["events"]]
    assert sorted(out_ids) == sorted(e["event_id"] for e in stream_run["good"])


def test_alerts_equal_the_backtest(stream_run) -> None:
    expected = backtest_alerts(stream_run["good"])
    assert {a["action"] for a in expected} >= {"trigger", "resolve"}
    got = stream_run["alerts"]
    assert len({alert_identity(a) for a in got}) == len(got), "an alert was produced twice"
    assert sorted(map(alert_identity, got)) == sorted(map(alert_identity, expected))


def test_bad_messages_go_to_the_dead_letter_topic_with_reason_and_source(stream_run) -> None:
    dead = stream_run["dead"]
    assert len(dead) == len(BAD_MESSAGES)
    assert {d["source_topic"] for d in dead} == {stream_run["topics"]["raw"]}
    assert all(d["reason"] and d["source_offset"] is not None and d["source_partition"] is not None for d in dead)
    import base64

    originals = {base64.b64decode(d["original_b64"]) for d in dead}
    # kept as sent, but for the words of the message that is not JSON (they could be prompt text)
    assert originals == set(BAD_MESSAGES) - {b"{this is not json"} | {b"{* * * *"}
    assert {d["error_type"] for d in dead} >= {"invalid_json", "validation", "missing_attribution"}
    # the good events around them were all processed (the worker kept going)
    assert len(stream_run["events"]) == len(stream_run["good"])
