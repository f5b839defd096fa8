"""The detect stage without Kafka: parsing, routing, event-time reordering, ticks, crash replay.

These pin the properties the stream tests then check end to end: the stream's alerts
equal the backtest's, and replaying from the last commit applies every record once.
"""

from __future__ import annotations

import random
from datetime import timedelta

import orjson
import pytest

from spendwatch.config import Settings
from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.detectors.engine import Engine
from spendwatch.detectors.observation_wire import decode_envelope
from spendwatch.streams.config import TopicsConfig
from spendwatch.streams.detection import PartitionDetector, partition_items
from spendwatch.streams.pipeline import (
    ENVELOPE_MAX_RECORDS,
    RawMessage,
    canonical_outputs,
    dead_letter_outputs,
    envelope_outputs,
    parse_batch,
    route_records,
    state_partition,
)

from streams_kit import T0, event, steady_traffic

PARTITIONS = 4


def incident_traffic() -> list[dict]:
    """Five days of steady spend on 6 keys, then key-1 burns $3,000 in an hour (spike, then resolve)."""
    events = steady_traffic(6, 24 * 4, 4, cost="0.40")
    spike_at = T0 + timedelta(days=4)
    # 300 new $10 sessions: a rise of ordinary traffic (spend_spike's), no single session burning (session_burn's)
    events += [event(900_000 + i, "key-1", spike_at + timedelta(seconds=12 * i), "10", team="team-1",
                     session=f"s{i}")
               for i in range(300)]
    events += steady_traffic(6, 30, 4, cost="0.40", start=spike_at + timedelta(hours=1), first_id=1_000_000)
    return events


def envelopes(events: list[dict], engine: Engine, *, batch: int = 400) -> dict[int, list[tuple[int, list]]]:
    """What the parse stage would put on each routed partition: ``{partition: [(offset, entries)]}``."""
    out: dict[int, list[tuple[int, list]]] = {p: [] for p in range(PARTITIONS)}
    for start in range(0, len(events), batch):
        msgs = [RawMessage(orjson.dumps(e), "raw", 0, start + i) for i, e in enumerate(events[start:start + batch])]
        parsed = parse_batch(msgs, Settings().adapters)
        for output in envelope_outputs(route_records(parsed, engine.routes, PARTITIONS), "routed"):
            out[output.partition].append((len(out[output.partition]), decode_envelope(output.value)))
    return out


def run_partitions(engine: Engine, routed: dict[int, list[tuple[int, list]]], lateness: float = 0.0) -> list:
    alerts = []
    for partition, envs in routed.items():
        detector = PartitionDetector(engine, partition, lateness)
        for offset, entries in envs:
            detector.accept(offset, entries)
        detector.release(everything=True)
        alerts += detector.flush().alerts
    return alerts


def key_of(alert) -> tuple:
    return (alert.dedup_key, alert.action.value, alert.fired_at, alert.summary, alert.observed)


def test_parse_batch_dead_letters_name_their_source_and_keep_the_good_records() -> None:
    good = [orjson.dumps(event(i, "k", T0 + timedelta(seconds=i), "1")) for i in range(3)]
    msgs = [RawMessage(good[0], "raw", 2, 10), RawMessage(b"{not json", "raw", 2, 11), RawMessage(good[1], "raw", 2, 12),
            RawMessage(orjson.dumps({**event(9, "k", T0, "1"), "cost_usd": "-5"}), "raw", 2, 13),
            RawMessage(None, "raw", 2, 14), RawMessage(good[2], "raw", 2, 15)]
    parsed = parse_batch(msgs, Settings().adapters)
    assert [r.event_id for r in parsed.records] == ["e0", "e1", "e2"]
    assert [(d.source_partition, d.source_offset, d.error_type) for d in parsed.dead_letters] == [
        (2, 11, "invalid_json"), (2, 13, "validation"), (2, 14, "invalid_json")]
    assert parsed.dead_letters[0].original == b"{* *"  # words outside JSON strings could be text: blanked
    assert parsed.dead_letters[1].field and "cost" in parsed.dead_letters[1].field
    outs = dead_letter_outputs(parsed.dead_letters, TopicsConfig())
    assert outs[0].key == b"raw:2:11" and orjson.loads(outs[0].value)["reason"]
    events_out = canonical_outputs(parsed, TopicsConfig())
    assert {o.topic for o in events_out} == {"spendwatch-events"} and {o.key for o in events_out} == {b"k"}


def test_routing_sends_every_state_key_to_one_partition_and_caps_envelopes() -> None:
    engine = Engine(DetectorsConfig())
    events = steady_traffic(40, 1, 30)
    routed = envelopes(events, engine, batch=len(events))
    seen: dict[str, int] = {}
    for partition, envs in routed.items():
        for _, entries in envs:
            assert len(entries) <= ENVELOPE_MAX_RECORDS
            for keys, _ in entries:
                for key in keys:
                    assert state_partition(key, PARTITIONS) == partition
                    assert seen.setdefault(key, partition) == partition
    assert sum(len(e) for envs in routed.values() for _, e in envs) >= len(events)
    assert len({p for p in seen.values()}) > 1  # the keys are spread over partitions


@pytest.fixture(scope="module")
def traffic_and_backtest():
    engine = Engine(DetectorsConfig())
    events = incident_traffic()
    records = parse_batch([RawMessage(orjson.dumps(e), "raw", 0, i) for i, e in enumerate(events)],
                          Settings().adapters).records
    expected = list(run_backtest(records, DetectorsConfig()))
    assert {a.action.value for a in expected} >= {"trigger", "resolve"}  # the scenario pages and resolves
    return events, expected


def test_partitioned_stream_alerts_equal_the_backtest(traffic_and_backtest) -> None:
    events, expected = traffic_and_backtest
    engine = Engine(DetectorsConfig())
    alerts = run_partitions(engine, envelopes(events, engine))
    assert sorted(map(key_of, alerts)) == sorted(map(key_of, expected))


def test_out_of_order_within_the_lateness_gives_the_same_alerts(traffic_and_backtest) -> None:
    events, expected = traffic_and_backtest
    rng = random.Random(7)
    # shuffle within windows of 20 events (a few minutes of event time here)
    shuffled = []
    for start in range(0, len(events), 20):
        window = events[start:start + 20]
        rng.shuffle(window)
        shuffled += window
    assert shuffled != events
    engine = Engine(DetectorsConfig())
    alerts = run_partitions(engine, envelopes(shuffled, engine), lateness=3600)
    assert sorted(map(key_of, alerts)) == sorted(map(key_of, expected))
    # without a reorder window, records arriving one per envelope are processed out of order
    engine = Engine(DetectorsConfig())
    late = 0
    for partition, envs in envelopes(shuffled, engine, batch=1).items():
        detector = PartitionDetector(engine, partition, 0.0)
        for offset, entries in envs:
            detector.accept(offset, entries)
        late += detector.stats.late
    assert late > 0


def test_crash_and_replay_from_the_commit_applies_each_record_once(traffic_and_backtest) -> None:
    """Flush mid-stream with records still buffered, lose everything after, replay from the commit."""
    events, expected = traffic_and_backtest
    engine = Engine(DetectorsConfig())
    routed = envelopes(events, engine, batch=50)
    alerts = []
    for partition, envs in routed.items():
        if not envs:
            continue
        first = PartitionDetector(engine, partition, allowed_lateness_s=1800)
        done: set[int] = set()
        cut = len(envs) // 2
        for offset, entries in envs[:cut]:
            first.accept(offset, entries)
            done.update(first.take_done())
        assert first.buffered  # records wait in the reorder buffer at the commit
        committed = first.flush()
        alerts += committed.alerts
        # uncommitted work after the flush is lost in the crash
        for offset, entries in envs[cut:cut + 3]:
            first.accept(offset, entries)
        # the committed offset is the first envelope not fully processed
        resume_at = min(o for o, _ in envs if o not in done)
        table = [*committed.states, committed.meta]
        second = PartitionDetector(engine, partition, allowed_lateness_s=1800)
        second.restore(partition_items(table, partition, PARTITIONS))
        for offset, entries in envs:
            if offset >= resume_at:
                second.accept(offset, entries)
        second.release(everything=True)
        alerts += second.flush().alerts
        # the state totals equal an uninterrupted run's
        whole = PartitionDetector(engine, partition, allowed_lateness_s=1800)
        for offset, entries in envs:
            whole.accept(offset, entries)
        whole.release(everything=True)
        assert {k: s.baseline.running_24h for k, s in second.states.items()} == {
            k: s.baseline.running_24h for k, s in whole.states.items()}
    assert sorted(map(key_of, alerts)) == sorted(map(key_of, expected))


def test_partition_items_filters_other_partitions_and_foreign_metadata() -> None:
    items = [(b"key:a", b"1"), (b"key:b", b"2"), (b"\x00partition:1", b"m1"), (b"\x00partition:0", b"m0")]
    mine = dict(partition_items(items, 0, PARTITIONS))
    assert "\x00partition:1" not in mine and mine["\x00partition:0"] == b"m0"
    assert all(state_partition(k, PARTITIONS) == 0 for k in mine if not k.startswith("\x00"))


def test_a_redelivered_envelope_is_applied_once_and_done_only_when_its_buffered_records_are() -> None:
    """Faust may hand an envelope over again in the same generation (its seek back to the commit)."""
    engine = Engine(DetectorsConfig())
    events = steady_traffic(3, 2, 6)
    routed = envelopes(events, engine, batch=len(events))
    partition, envs = next((p, e) for p, e in routed.items() if e)
    offset, entries = envs[0]
    detector = PartitionDetector(engine, partition, allowed_lateness_s=10**9)  # everything stays buffered
    detector.accept(offset, entries)
    buffered = detector.buffered
    assert buffered == len(entries) and detector.take_done() == []
    detector.accept(offset, entries)  # the same envelope again
    assert detector.buffered == buffered, "a redelivered envelope was buffered twice"
    assert detector.take_done() == [], "acknowledged while its records still wait: a crash would lose them"
    detector.release(everything=True)
    assert detector.take_done() == [offset]
    assert detector.applied == len(entries)


def test_redelivery_guard_skips_only_what_this_generation_already_handled() -> None:
    from spendwatch.streams.redelivery import RedeliveryGuard

    guard = RedeliveryGuard()
    assert all(guard.first_time("raw", 1, generation=3, offset=o) for o in range(100, 110))
    assert guard.first_time("raw", 2, generation=3, offset=100)  # another partition is its own range
    again = [o for o in range(95, 112) if guard.first_time("raw", 1, generation=3, offset=o)]
    assert again == [95, 96, 97, 98, 99, 110, 111]
    assert guard.redelivered == 10
    guard.forget()
    assert guard.first_time("raw", 1, generation=3, offset=105)
