"""Crash safety and rebalancing of stream workers against the real (embedded) broker.

* kill -9 a worker mid-stream, restart it: every record applied exactly once (the committed
  state's spend equals the exact sum of the produced costs), no page produced twice;
* two workers share the partitions, then one leaves: the state moves with its partitions.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest

from spendwatch.detectors.config import DetectorsConfig
from spendwatch.detectors.engine import Engine

from streams_kit import (
    T0,
    WorkerProcess,
    applied_records,
    event,
    expected_applied,
    isolated_pipeline,
    produce,
    read_all,
    read_table,
    run,
    wait_applied,
    wait_table,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4


def traffic(keys: int, hours: int, per_hour: int, *, seed: int, first_id: int = 0, start=T0,
            spikes: tuple[int, ...] = ()) -> list[dict]:
    """Random-cost traffic within one day (so each key's rolling 24 h spend is its whole spend) plus spikes."""
    rng = random.Random(seed)
    out = []
    i = first_id
    for n in range(hours * per_hour):
        at = start + timedelta(hours=1) * n / per_hour
        for k in range(keys):
            cost = Decimal(rng.randint(1, 90_000)) / 1_000_000
            out.append(event(i, f"key-{k}", at + timedelta(milliseconds=k), cost, team=f"team-{k % 3}"))
            i += 1
        if n in spikes:  # a runaway call on its own key: pages at once
            out.append(event(i, f"runaway-{n}", at, "2500", team="team-9"))
            i += 1
    return out


def key_spend_micros(table: dict[bytes, bytes]) -> dict[str, int]:
    engine = Engine(DetectorsConfig())
    return {k.decode(): engine.loads(v).baseline.running_24h for k, v in table.items() if k.startswith(b"key:")}


def produced_micros(events: list[dict]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for e in events:
        totals[f"key:{e['api_key_hash']}"] += int(Decimal(e["cost_usd"]) * 1_000_000)
    return dict(totals)


def assert_no_duplicate_pages(alerts: list[dict]) -> None:
    ids = Counter((a["dedup_key"], a["action"], a["fired_at"]) for a in alerts)
    assert not [i for i, n in ids.items() if n > 1], "a page was produced twice"
    triggers = Counter(a["dedup_key"] for a in alerts if a["action"] == "trigger")
    assert set(triggers.values()) <= {1}


def make_pipeline(kafka_bootstrap, tmp_path, partitions=PARTITIONS, **streams):
    return isolated_pipeline(kafka_bootstrap, tmp_path, partitions=partitions,
                             **{"commit_interval_s": 0.3, "batch_size": 500, **streams})


def test_kill_9_mid_stream_then_restart_loses_nothing_and_counts_nothing_twice(kafka_bootstrap, tmp_path) -> None:
    # static membership: the restarted worker (same name) takes the dead one's place in the group at once
    pipeline = make_pipeline(kafka_bootstrap, tmp_path, static_membership=True)
    bootstrap, topics, changelog = pipeline["bootstrap"], pipeline["topics"], pipeline["changelog"]
    events = traffic(40, 12, 24, seed=5, spikes=(2, 5, 9))
    expected = expected_applied(events, PARTITIONS)
    quarter = len(events) // 4
    head, middle, tail = events[:quarter], events[quarter:2 * quarter], events[2 * quarter:]
    first = WorkerProcess(pipeline["config"], pipeline["tmp"], "first").start()
    try:
        run(produce(bootstrap, topics["raw"], head))
        run(wait_applied(bootstrap, changelog, expected_applied(head, PARTITIONS), timeout=120, alive=first.alive))
        run(produce(bootstrap, topics["raw"], middle))
        run(wait_applied(bootstrap, changelog, expected, at_least=expected_applied(head, PARTITIONS) + 1,
                         timeout=120, alive=first.alive))
        # die with the tail just produced: being fetched, parsed or applied, none of it committed yet (that takes
        # two commits, parse then detect); a fast worker may have committed all of the middle by now
        run(produce(bootstrap, topics["raw"], tail))
    finally:
        first.kill()  # SIGKILL: no shutdown, no final commit, open transactions left behind
    applied_at_kill = applied_records(run(read_table(bootstrap, changelog)))
    assert expected_applied(head, PARTITIONS) < applied_at_kill < expected, "the kill did not happen mid-stream"

    # restarted under the same name (same web port), as a pod of a StatefulSet would be
    second = WorkerProcess(pipeline["config"], pipeline["tmp"], "second", web_port=first.web_port).start()
    try:
        table = run(wait_applied(bootstrap, changelog, expected, timeout=150, alive=second.alive))
        alerts = run(read_all(bootstrap, topics["alerts"]))
        canonical = run(read_all(bootstrap, topics["events"]))
    except Exception:
        print(first.log()[-5000:], second.log()[-10000:])
        raise
    finally:
        second.stop()
    # every record applied exactly once: each key's spend is exactly what was produced
    assert key_spend_micros(table) == produced_micros(events)
    # each runaway call paged once, nothing twice
    assert_no_duplicate_pages(alerts)
    paged = {a["subject"] for a in alerts if a["action"] == "trigger" and a["detector"] == "spend_spike"}
    assert paged == {"runaway-2", "runaway-5", "runaway-9"}
    # the canonical events topic (read_committed) holds every event exactly once
    assert Counter(e["event_id"] for e in canonical) == Counter(e["event_id"] for e in events)


def test_two_workers_share_partitions_and_hand_state_over(kafka_bootstrap, tmp_path) -> None:
    pipeline = make_pipeline(kafka_bootstrap, tmp_path)
    bootstrap, topics, changelog = pipeline["bootstrap"], pipeline["topics"], pipeline["changelog"]
    part1 = traffic(30, 4, 12, seed=1, spikes=(1,))
    part2 = traffic(30, 4, 12, seed=2, first_id=10**6, start=T0 + timedelta(hours=4), spikes=(2,))
    part3 = traffic(30, 4, 12, seed=3, first_id=2 * 10**6, start=T0 + timedelta(hours=8), spikes=(3,))
    a = WorkerProcess(pipeline["config"], pipeline["tmp"], "a").start()
    b = WorkerProcess(pipeline["config"], pipeline["tmp"], "b")
    try:
        run(produce(bootstrap, topics["raw"], part1))
        run(wait_applied(bootstrap, changelog, expected_applied(part1, PARTITIONS), timeout=120, alive=a.alive))
        b.start()  # rebalance: b takes some partitions, with their state
        run(produce(bootstrap, topics["raw"], part2))
        run(wait_applied(bootstrap, changelog, expected_applied(part1 + part2, PARTITIONS), timeout=120,
                         alive=lambda: a.alive() and b.alive()))
        a.stop()  # graceful leave: b takes every partition
        run(produce(bootstrap, topics["raw"], part3))
        table = run(wait_applied(bootstrap, changelog, expected_applied(part1 + part2 + part3, PARTITIONS),
                                 timeout=120, alive=b.alive))
        alerts = run(read_all(bootstrap, topics["alerts"]))
    except Exception:
        print(a.log()[-8000:], b.log()[-8000:])
        raise
    finally:
        a.stop()
        b.stop()
    assert key_spend_micros(table) == produced_micros(part1 + part2 + part3)
    assert_no_duplicate_pages(alerts)
    assert {a["subject"] for a in alerts if a["action"] == "trigger" and a["detector"] == "spend_spike"} == {
        "runaway-1", "runaway-2", "runaway-3"}
    # b restored state it did not build itself (partitions handed over with their baselines)
    loaded = [line for line in b.log().splitlines() if "detector states loaded" in line]
    assert any(" 0 detector states" not in line for line in loaded)


def test_an_envelope_waiting_in_the_reorder_buffer_is_not_committed_past(kafka_bootstrap, tmp_path) -> None:
    """A later envelope finishing first must not commit the routed offset past an earlier, unfinished one.

    Envelope A holds a record that waits in the reorder buffer; envelope B, read after it, holds only a
    late record (processed at once). Were B acknowledged before A, Faust would commit past A (it
    commits over one unacknowledged offset after the last commit), A's record would be lost in a
    crash, and A's own acknowledgement, once its record is released, would be ignored: the state it
    produced would sit in a transaction that never commits.
    """
    pipe = make_pipeline(kafka_bootstrap, tmp_path, partitions=1, allowed_lateness_s=3600, idle_release_s=10)
    bootstrap, changelog = pipe["bootstrap"], pipe["changelog"]
    held = event(1, "key-a", T0 + timedelta(hours=10), "0.50")
    late = event(2, "key-b", T0, "0.25")
    with WorkerProcess(pipe["config"], tmp_path) as worker:
        try:
            run(produce(bootstrap, pipe["topics"]["raw"], [held]))
            # A is read and waiting: the worker has sent state naming it pending (not committed: A is not done)
            run(wait_table(bootstrap, changelog, lambda table: any(
                orjson.loads(v)["pending"] for k, v in table.items() if k.startswith(b"\x00partition:")),
                timeout=60, alive=worker.alive, isolation_level="read_uncommitted"))
            run(produce(bootstrap, pipe["topics"]["raw"], [late]))
            # B is done at once; A once the partition has been idle for idle_release_s
            table = run(wait_applied(bootstrap, changelog, 2, timeout=60, alive=worker.alive))
        except Exception:
            print(worker.log()[-20000:])
            raise
    assert key_spend_micros(table) == {"key:key-a": 500_000, "key:key-b": 250_000}
