"""The parse stage's batch loop (:func:`parse_batch`): the same records, JSON and dead letters as the
per-message path, a bad record in a fetch dead-lettered alone, and the usual message kept off the slow path."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson

import spendwatch.schemas

from spendwatch.config import Settings
from spendwatch.schemas.event_window import EventTimeConfig
from spendwatch.streams import pipeline
from spendwatch.streams.pipeline import RawMessage, parse_batch

from streams_kit import T0, event

NOW = T0.timestamp() + 3600
SAMPLES = Path(spendwatch.schemas.__file__).resolve().parent / "samples"


def good(i: int, **extra) -> bytes:
    return orjson.dumps({**event(i, f"k{i % 3}", T0 + timedelta(seconds=i), "0.25"), **extra})


def messages(values: list[bytes | None]) -> list[RawMessage]:
    return [RawMessage(v, "raw", 1, 100 + i) for i, v in enumerate(values)]


def dead(parsed) -> list[tuple]:
    return [(d.source_offset, d.error_type, d.field, d.reason, d.original) for d in parsed.dead_letters]


def test_one_bad_record_in_the_middle_is_dead_lettered_alone_and_the_others_keep_their_order() -> None:
    values = [good(i) for i in range(9)]
    values[4] = good(4, input_tokens=-1)  # passes the fast path's byte test, fails validation
    parsed = parse_batch(messages(values), Settings().adapters, now=NOW)
    assert [r.event_id for r in parsed.records] == ["e0", "e1", "e2", "e3", "e5", "e6", "e7", "e8"]
    assert [orjson.loads(j)["event_id"] for j in parsed.record_json] == [r.event_id for r in parsed.records]
    assert [(d.source_partition, d.source_offset, d.error_type, d.field) for d in parsed.dead_letters] == [
        (1, 104, "validation", "input_tokens")]
    assert parsed.dead_letters[0].original == values[4]


def test_the_batch_loop_equals_the_per_message_path_on_odd_input() -> None:
    """Messages that must leave the batch loop: every one gives what the per-message path gives, in place."""
    sample = orjson.loads((SAMPLES / "litellm_standard_logging_payload.json").read_bytes())
    no_cost = {k: v for k, v in orjson.loads(good(20)).items() if k != "cost_usd"}
    values: list[bytes | None] = [
        good(0),
        good(1, model="openai/gpt-4o"),  # one model name: rewritten by the per-message path
        good(2, event_time="2001-01-01T00:00:00Z"),  # out of the event-time window
        good(3, event_time=(T0 + timedelta(days=3)).isoformat()),  # too far ahead
        orjson.dumps(no_cost),  # the cost computed
        good(5, cost_usd="0.1234567890123456"),  # rounded to 12 decimals
        good(6, surprise=1),  # extra field
        b" " + good(7) + b"\n",  # surrounding whitespace
        good(8)[:-1] + b", " + good(9),  # two objects: not one JSON value
        good(10)[:-1] + b',"event_id":"dup"}',  # a duplicate key
        None,
        b"",
        b"[" + good(11) + b"," + good(12, input_tokens=-5) + b"]",  # a list: the good one kept
        orjson.dumps(sample),
        good(13, user="  ann  "),
        good(14),
    ]
    adapters = Settings().adapters
    for config in (adapters, adapters.model_copy(update={"event_time": EventTimeConfig(enforce=False)})):
        fast = parse_batch(messages(values), config, now=NOW)
        slow = parse_batch(messages(values), config, now=NOW, fast_path=False)
        assert fast.records == slow.records
        assert fast.record_json == slow.record_json
        assert dead(fast) == dead(slow)
    assert {"e0", "e5", "e14"} <= {r.event_id for r in fast.records}
    assert {d[0] for d in dead(slow)} >= {108, 110, 111}


def test_the_usual_message_stays_off_the_per_message_path(monkeypatch) -> None:
    calls: list[int] = []
    per_message = pipeline.parse_message_into

    def counting(out, msg, *args):
        calls.append(msg.offset)
        per_message(out, msg, *args)

    monkeypatch.setattr(pipeline, "parse_message_into", counting)
    values = [good(i) for i in range(6)]
    values[2] = good(2, model="openai/gpt-4o")
    values[4] = b"{not json"
    parsed = parse_batch(messages(values), Settings().adapters, now=NOW)
    assert calls == [102, 104]
    assert [r.event_id for r in parsed.records] == ["e0", "e1", "e2", "e3", "e5"]
    assert parsed.records[2].model == "gpt-4o" and parsed.records[2].provider == "openai"
