"""Canonical events and outcomes, cost resolution rules, format detection."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from spendwatch.schemas.adapters import dumps, parse_message
from spendwatch.schemas.adapters.canonical import parse_event, parse_outcome
from spendwatch.schemas.adapters.config import AdaptersConfig, PricingConfig
from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import CostSource, GatewayEvent
from spendwatch.schemas.outcome import OutcomeEvent

EVENT = {
    "event_id": "e-1", "event_time": "2026-03-01T12:00:00+02:00", "gateway": "portkey", "api_key_hash": "k1",
    "user": "ann", "model": "gpt-4o", "provider": "openai", "input_tokens": 1000, "cache_read_tokens": 400,
    "output_tokens": 100, "cost_usd": "0.0021", "cost_source": "gateway",
}


def test_round_trip_is_exact():
    event = parse_event(orjson.dumps(EVENT))
    assert event.event_time == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert event.cost_usd == Decimal("0.0021")
    assert parse_event(dumps(event)) == event
    assert parse_message(dumps(event)) == [event]


def test_missing_cost_on_success_is_computed():
    data = {k: v for k, v in EVENT.items() if k not in ("cost_usd", "cost_source")}
    [event] = parse_message(data)
    # gpt-4o: 600 fresh x $2.5/M + 400 cached x $1.25/M + 100 out x $10/M
    assert event.cost_usd == Decimal("0.0015") + Decimal("0.0005") + Decimal("0.001")
    assert event.cost_source is CostSource.computed
    assert parse_event(orjson.dumps(data)) == event


def test_unknown_model_never_a_silent_zero():
    data = {**{k: v for k, v in EVENT.items() if k not in ("cost_usd", "cost_source")}, "model": "acme-llm-7b",
            "provider": "vllm"}
    [event] = parse_message(data)
    assert event.cost_usd is None and event.cost_source is CostSource.unknown
    assert "acme-llm-7b" in event.cost_unknown_reason
    assert event.input_tokens == 1000 and event.cost_micros == 0


def test_failure_without_tokens_costs_zero_and_with_tokens_is_priced():
    base = {k: v for k, v in EVENT.items() if k not in ("cost_usd", "cost_source")}
    [rejected] = parse_message({**base, "status": "failure", "error_type": "rate_limit", "input_tokens": 0,
                                "cache_read_tokens": 0, "output_tokens": 0})
    assert rejected.cost_usd == 0 and rejected.cost_source is CostSource.computed
    [interrupted] = parse_message({**base, "status": "failure", "error_type": "stream_interrupted"})
    assert interrupted.cost_usd > 0


def test_cost_computation_can_be_disabled():
    base = {k: v for k, v in EVENT.items() if k not in ("cost_usd", "cost_source")}
    config = AdaptersConfig(pricing=PricingConfig(compute_missing_costs=False))
    [event] = parse_message(base, config)
    assert event.cost_source is CostSource.unknown and "disabled" in event.cost_unknown_reason


def test_outcome():
    outcome = {"outcome_id": "o-1", "event_time": "2026-03-01T12:00:00Z", "kind": "pr_merged", "user": "ann",
               "source": "github", "attributes": {"repo": "acme/api"}}
    [parsed] = parse_message(orjson.dumps(outcome))
    assert isinstance(parsed, OutcomeEvent) and parsed.kind == "pr_merged"
    assert parse_outcome(orjson.dumps(outcome)) == parsed


def test_prompt_text_is_rejected_not_stored():
    with pytest.raises(ParseError) as info:
        parse_event(orjson.dumps({**EVENT, "messages": [{"content": "secret"}]}))
    assert info.value.field == "messages"
    letter = info.value.to_dead_letter(orjson.dumps({**EVENT, "messages": [{"content": "secret"}]}),
                                       source_topic="raw", source_offset=7)
    assert b"secret" not in letter.original and letter.source_offset == 7
    assert orjson.loads(letter.original)["event_id"] == "e-1"


def test_gateway_event_is_what_parse_event_returns():
    assert isinstance(parse_event(orjson.dumps(EVENT)), GatewayEvent)
