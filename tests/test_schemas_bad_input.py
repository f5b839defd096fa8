"""Bad input gets a precise, typed error; nothing crashes the parser (property-based)."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spendwatch.schemas.adapters import parse_message, parse_message_partial
from spendwatch.schemas.adapters.config import AdaptersConfig
from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import MAX_TOKENS

GOOD = {
    "event_id": "e-1", "event_time": "2026-03-01T12:00:00Z", "gateway": "mine", "api_key_hash": "k1",
    "model": "gpt-4o", "input_tokens": 10, "output_tokens": 5, "cost_usd": "0.001",
}
LITELLM = {
    "litellm_call_id": "c1", "call_type": "completion", "status": "success", "model": "gpt-4o",
    "custom_llm_provider": "openai", "startTime": 1767268800.0, "endTime": 1767268801.0, "response_cost": 0.001,
    "metadata": {"user_api_key_hash": "k", "usage_object": {"prompt_tokens": 10, "completion_tokens": 5}},
}


def error_of(message) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_message(message)
    return info.value


@pytest.mark.parametrize(("raw", "error_type"), [
    (b"", "invalid_json"),
    (b"   ", "invalid_json"),
    (b"{not json", "invalid_json"),
    (b'{"a": NaN}', "invalid_json"),
    (b"\xff\xfe\x00", "invalid_json"),
    (b"42", "validation"),
    (b'"text"', "validation"),
    (b"null", "validation"),
    (b'{"hello": "world"}', "unknown_format"),
])
def test_whole_message_errors(raw, error_type):
    assert error_of(raw).error_type == error_type


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"input_tokens": -1}, "input_tokens", "greater than or equal to 0"),
    ({"input_tokens": "many"}, "input_tokens", "valid integer"),
    ({"input_tokens": MAX_TOKENS + 1}, "input_tokens", "less than or equal"),
    ({"cost_usd": "-0.5"}, "cost_usd", "greater than or equal to 0"),
    ({"cost_usd": "NaN"}, "cost_usd", "finite"),
    ({"event_time": "yesterday"}, "event_time", "datetime"),
    ({"model": ""}, "model", "at least 1 character"),
    ({"cache_read_tokens": 50}, None, "exceed input_tokens"),
])
def test_canonical_field_errors_name_the_field(change, field, words):
    err = error_of({**GOOD, **change})
    assert err.error_type == "validation"
    assert err.field == field
    assert words in err.reason


def test_missing_key_and_user():
    err = error_of({k: v for k, v in GOOD.items() if k != "api_key_hash"})
    assert err.error_type == "missing_attribution" and "api_key_hash and user" in err.reason


@pytest.mark.parametrize(("usage", "field", "error_type"), [
    ({"prompt_tokens": -3}, "metadata.usage_object.prompt_tokens", "validation"),
    ({"prompt_tokens": 1.5}, "metadata.usage_object.prompt_tokens", "validation"),
    ({"prompt_tokens": True}, "metadata.usage_object.prompt_tokens", "validation"),
    ({"prompt_tokens": 10**12}, "metadata.usage_object.prompt_tokens", "too_large"),
    ({"prompt_tokens": 5, "completion_tokens": "x"}, "metadata.usage_object.completion_tokens", "validation"),
    ({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": -1}},
     "metadata.usage_object.prompt_tokens_details.cached_tokens", "validation"),
])
def test_litellm_usage_errors_name_the_sender_field(usage, field, error_type):
    err = error_of({**LITELLM, "metadata": {**LITELLM["metadata"], "usage_object": usage}})
    assert (err.error_type, err.field, err.gateway) == (error_type, field, "litellm")


def test_nan_and_infinite_costs_from_decoded_input():
    for bad in (math.nan, math.inf):
        err = error_of({**LITELLM, "response_cost": bad})
        assert (err.field, err.error_type) == ("response_cost", "validation") and "finite" in err.reason


def test_absurd_sizes():
    config = AdaptersConfig(max_message_bytes=2048, max_records_per_message=3)
    big = orjson.dumps({**GOOD, "padding": "x" * 4096})
    assert error_of_cfg(big, config).error_type == "too_large"
    assert error_of_cfg(orjson.dumps([GOOD] * 4), config).error_type == "too_large"
    assert error_of(b"[" * 5000 + b"]" * 5000).error_type in ("invalid_json", "too_large")
    assert error_of({**GOOD, "cost_usd": "1e9"}).field == "cost_usd"


def error_of_cfg(raw, config) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_message(raw, config)
    return info.value


def test_dead_letter_keeps_reason_and_field():
    raw = orjson.dumps({**GOOD, "input_tokens": -1})
    err = error_of(raw)
    letter = err.to_dead_letter(raw, source_topic="spendwatch-raw", source_partition=2, source_offset=11)
    assert (letter.error_type, letter.field, letter.source_partition) == ("validation", "input_tokens", 2)
    assert orjson.loads(letter.original) == orjson.loads(raw)


# ---------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
KEYS = sorted({*GOOD, *LITELLM, *LITELLM["metadata"], "prompt_tokens", "completion_tokens", "usage", "cost",
               "resourceSpans", "scopeSpans", "spans", "attributes", "traceId", "spanId", "specversion", "type",
               "data", "outcome_id", "kind", "id", "created", "spendwatch", "startTimeUnixNano", "key", "value",
               "intValue", "stringValue", "arrayValue", "values", "standard_logging_object", "subject", "time"})
shaped = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.sampled_from(KEYS),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=8),
    max_leaves=40,
)


def only_parse_errors(message) -> None:
    try:
        records = parse_message(message)
    except ParseError as exc:
        assert exc.error_type and exc.reason
        if isinstance(message, bytes):
            assert exc.to_dead_letter(message).error_type == exc.error_type
    else:
        assert isinstance(records, list)
    parse_message_partial(message)  # never raises


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_no_byte_string_crashes_the_parser(raw):
    only_parse_errors(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_no_json_value_crashes_the_parser(value):
    only_parse_errors(value)
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return
    only_parse_errors(encoded)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped)
def test_no_gateway_shaped_value_crashes_the_parser(value):
    """Objects built from the keys adapters look for reach deep into every adapter."""
    only_parse_errors(value)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional={k: json_values for k in GOOD}))
def test_mutated_canonical_events_only_raise_parse_errors(event):
    only_parse_errors({**GOOD, **event})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(LITELLM["metadata"]["usage_object"]) + [
    "prompt_tokens_details", "cache_read_input_tokens", "cache_creation_input_tokens", "completion_tokens_details"]),
    json_values, max_size=6), json_values)
def test_mutated_litellm_payloads_only_raise_parse_errors(usage, cost):
    only_parse_errors({**LITELLM, "response_cost": cost, "metadata": {**LITELLM["metadata"], "usage_object": usage}})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_no_text_crashes_the_parser(text):
    only_parse_errors(text)


def test_dead_letter_redacts_prompt_text_of_a_rejected_litellm_payload():
    raw = orjson.dumps({**LITELLM, "messages": [{"role": "user", "content": "top secret plan"}],
                        "response": {"choices": [{"message": {"content": "secret reply"}}]},
                        "metadata": {**LITELLM["metadata"], "usage_object": {"prompt_tokens": -1}}})
    err = error_of(raw)
    letter = err.to_dead_letter(raw, source_topic="spendwatch-raw")
    assert b"top secret" not in letter.original and b"secret reply" not in letter.original
    assert orjson.loads(letter.original)["litellm_call_id"] == "c1"  # the rest is kept to diagnose and replay
