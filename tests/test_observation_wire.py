"""The Observation wire format of routed envelopes: bytes pinned, both formats read (no broker)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from spendwatch.detectors import observation_wire as wire
from spendwatch.detectors.base import Observation
from spendwatch.detectors.engine import observe
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.outcome import OutcomeEvent

REQUEST = Observation(kind="request", ts=1795463911.25, cost=1_234_567, cost_known=True, model="o3", provider="openai",
                      session_id="s1", tags=("a", "b"), ok=False, error_type="E", input_tokens=10, cache_read_tokens=4,
                      cache_write_tokens=1, output_tokens=3, reasoning_tokens=2, key_hash="k1", key_alias="ci",
                      user="ann", team="ml", org="acme", record_id="e1")
OUTCOME = Observation(kind="outcome", ts=1795463912.5, cost_known=False, session_id="s1", outcome_kind="task_success",
                      outcome_value=1.0, key_hash="k1", user="ann", team="ml", record_id="o1")
#: An envelope as the parse stage wrote it before the format had its own module (what the routed topic holds).
WRITTEN = (b'[2,[["key:k1","team:ml"],["request",1795463911.25,1234567,true,"o3","openai","s1",["a","b"],false,"E",'
           b'10,4,1,3,2,null,0.0,"k1","ci","ann","ml","acme","e1"]],[["key:k1"],["outcome",1795463912.5,0,false,"",'
           b'null,"s1",[],true,null,0,0,0,0,0,"task_success",1.0,"k1",null,"ann","ml",null,"o1"]]]')


def test_the_bytes_on_the_wire_are_unchanged() -> None:
    entries = [(["key:k1", "team:ml"], wire.encode_row(REQUEST)), (["key:k1"], wire.encode_row(OUTCOME))]
    assert wire.encode_envelope(entries) == WRITTEN


def test_envelopes_already_written_decode_to_the_same_observations() -> None:
    assert wire.decode_envelope(WRITTEN) == [(["key:k1", "team:ml"], REQUEST), (["key:k1"], OUTCOME)]


def test_the_row_order_is_fixed_here_not_by_the_dataclass() -> None:
    assert wire.ROW_FIELDS == (
        "kind", "ts", "cost", "cost_known", "model", "provider", "session_id", "tags", "ok", "error_type",
        "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
        "outcome_kind", "outcome_value", "key_hash", "key_alias", "user", "team", "org", "record_id")


def test_every_observation_field_travels() -> None:
    assert wire.unknown_fields() == [], "append the new Observation fields to observation_wire.ROW_FIELDS"
    assert wire.POSITIONAL, "Observation's fields were reordered: rows now decode by name (slower)"


def test_a_reordered_dataclass_still_decodes_by_name(monkeypatch) -> None:
    fields = [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(Observation)
              if f.default is not dataclasses.MISSING]
    reordered = dataclasses.make_dataclass("Reordered", [("ts", float), ("kind", str), *reversed(fields)])
    monkeypatch.setattr(wire, "Observation", reordered)
    row = wire.encode_row(REQUEST)
    assert reordered(*row).kind != "request"  # taken positionally it would be wrong
    decoded = wire._from_row_by_name(row)
    assert {name: getattr(decoded, name) for name in wire.ROW_FIELDS} == dataclasses.asdict(REQUEST)


def test_a_row_from_before_a_new_field_reads_its_default() -> None:
    short = list(wire.encode_row(REQUEST))[:-1]  # as if record_id had been appended after it was written
    assert wire.decode_row(short) == dataclasses.replace(REQUEST, record_id=None)


def test_the_request_row_is_the_observations_row() -> None:
    event = GatewayEvent(event_id="e1", event_time=datetime(2026, 11, 23, 9, tzinfo=UTC), gateway="litellm",
                         api_key_hash="k1", user="ann", team="ml", org="acme", model="o3", provider="openai",
                         session_id="s1", tags=("a",), status="failure", error_type="E", input_tokens=10,
                         cache_read_tokens=4, cache_write_tokens=1, output_tokens=3, reasoning_tokens=2,
                         cost_usd=Decimal("1.2345675"), api_key_alias="ci")
    assert wire.request_row(event) == wire.encode_row(observe(event))
    assert wire.decode_envelope(wire.encode_envelope([(["key:k1"], wire.request_row(event))])) == [
        (["key:k1"], observe(event))]


def test_format_1_envelopes_are_still_read() -> None:
    event = GatewayEvent(event_id="e1", event_time=datetime(2026, 11, 23, 9, tzinfo=UTC), gateway="litellm",
                         api_key_hash="k1", model="o3", cost_usd=Decimal("0.5"), tags=("a",))
    outcome = OutcomeEvent(outcome_id="o1", event_time=datetime(2026, 11, 23, 9, 1, tzinfo=UTC), api_key_hash="k1",
                           session_id="s1", kind="task_success", value=1.0)
    value = orjson.dumps([["e", ["key:k1"], orjson.loads(event.model_dump_json())],
                          ["o", ["key:k1"], orjson.loads(outcome.model_dump_json())]])
    assert wire.decode_envelope(value) == [(["key:k1"], observe(event)), (["key:k1"], observe(outcome))]
