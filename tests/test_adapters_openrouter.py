"""OpenRouter responses with usage accounting (field names as in openrouter.ai/docs/use-cases/usage-accounting)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from spendwatch.schemas.adapters import parse_message
from spendwatch.schemas.adapters.detect import detect_format
from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import CostSource, Status
from spendwatch.schemas.pricing import compute_cost


def response(**usage_overrides) -> dict:
    usage = {
        "prompt_tokens": 10339,
        "completion_tokens": 60,
        "total_tokens": 10399,
        "cost": 0.0036537,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 10318, "cache_write_tokens": 0, "audio_tokens": 0},
        "cost_details": {"upstream_inference_cost": None},
        "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0},
    }
    usage.update(usage_overrides)
    return {
        "id": "gen-1735689600-AbCdEfGhIjKlMnOp",
        "provider": "Anthropic",
        "model": "anthropic/claude-sonnet-4",
        "object": "chat.completion",
        "created": 1735689600,
        "choices": [{"finish_reason": "stop", "index": 0,
                     "message": {"role": "assistant", "content": "private completion text"}}],
        "usage": usage,
        "spendwatch": {"api_key_hash": "or-key-1", "user": "bob", "team": "growth", "session_id": "run-9",
                       "tags": ["agent:researcher"]},
    }


def test_cached_tokens_are_part_of_prompt_tokens():
    data = response()
    assert detect_format(data) == "openrouter"
    [event] = parse_message(orjson.dumps(data))
    assert event.gateway == "openrouter" and event.provider == "anthropic"
    assert event.input_tokens == 10339 and event.cache_read_tokens == 10318 and event.uncached_input_tokens == 21
    assert event.cost_usd == Decimal("0.0036537") and event.cost_source is CostSource.gateway
    assert (event.api_key_hash, event.user, event.team, event.session_id) == ("or-key-1", "bob", "growth", "run-9")
    assert event.tags == ("agent:researcher",)
    assert event.event_time.timestamp() == 1735689600
    assert "private completion text" not in event.model_dump_json()


def test_cache_writes_and_reasoning():
    data = response(prompt_tokens=194, completion_tokens=300,
                    prompt_tokens_details={"cached_tokens": 0, "cache_write_tokens": 100},
                    completion_tokens_details={"reasoning_tokens": 250})
    [event] = parse_message(data)
    assert (event.input_tokens, event.cache_write_tokens, event.cache_read_tokens) == (194, 100, 0)
    assert (event.output_tokens, event.reasoning_tokens) == (300, 250)


def test_byok_cost_adds_the_upstream_charge():
    data = response(cost=0.95, is_byok=True, cost_details={"upstream_inference_cost": 19})
    [event] = parse_message(data)
    assert event.cost_usd == Decimal("19.95")


def test_no_cost_is_computed_from_the_prefixed_model():
    data = response(cost=None)
    [event] = parse_message(data)
    expected, _ = compute_cost("claude-sonnet-4", "anthropic", input_tokens=10339, cache_read_tokens=10318,
                               output_tokens=60)
    assert event.cost_source is CostSource.computed and event.cost_usd == expected


def test_error_response_is_a_failure():
    data = {**response(prompt_tokens=0, completion_tokens=0, cost=0,
                       prompt_tokens_details={"cached_tokens": 0}), "error": {"code": 429, "message": "rate limited"}}
    [event] = parse_message(data)
    assert event.status is Status.failure and event.error_type == "429"


def test_negative_cost_names_the_field():
    with pytest.raises(ParseError) as info:
        parse_message(response(cost=-1))
    assert (info.value.error_type, info.value.field) == ("validation", "usage.cost")


def test_other_openai_compatible_response_with_attribution():
    data = {"id": "chatcmpl-123", "object": "chat.completion", "created": 1735689600, "model": "gpt-4o-mini",
            "choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 10,
                                     "prompt_tokens_details": {"cached_tokens": 0}},
            "spendwatch": {"user": "dan", "gateway": "vllm-proxy"}}
    [event] = parse_message(data)
    assert event.gateway == "vllm-proxy" and event.cost_source is CostSource.computed
    del data["spendwatch"]["gateway"]
    assert parse_message(data)[0].gateway == "openai_compatible"
