"""The LiteLLM adapter on payloads produced by the real ``litellm`` package.

A ``CustomLogger`` captures ``kwargs["standard_logging_object"]`` (exactly what LiteLLM's
generic_api / custom-callback integrations emit) from ``litellm.completion(mock_response=...)``;
the metadata carries the ``user_api_key_*`` fields the proxy fills from the virtual key.
No network I/O: the model cost map is LiteLLM's bundled copy.
"""

from __future__ import annotations

import os
import threading
from decimal import Decimal
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported: no fetch of the cost map

import orjson
import pytest

from spendwatch.schemas.adapters import parse_message, parse_message_partial
from spendwatch.schemas.adapters.detect import detect_format
from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import CostSource, Status
from spendwatch.schemas.pricing import compute_cost

litellm = pytest.importorskip("litellm")
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402
from litellm.integrations.openmeter import OpenMeterLogger  # noqa: E402
from litellm.llms.anthropic.chat.transformation import AnthropicConfig  # noqa: E402

PROXY_METADATA = {  # what the LiteLLM proxy puts in metadata for a virtual key
    "user_api_key_hash": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
    "user_api_key_alias": "search-agent-prod",
    "user_api_key_user_id": "ann@example.com",
    "user_api_key_team_id": "team-search",
    "user_api_key_team_alias": "Search",
    "user_api_key_org_id": "org-acme",
}
SECRET_PROMPT = "the launch codes are 0000"
SECRET_ANSWER = "understood, launching"


class Capture(CustomLogger):
    """Keeps every standard_logging_object, and what LiteLLM's OpenMeter integration would send."""

    def __init__(self) -> None:
        super().__init__()
        self.payloads: list[dict[str, Any]] = []
        self.cloudevents: list[dict[str, Any]] = []
        self.arrived = threading.Condition()

    def _keep(self, kwargs: dict[str, Any], response_obj: Any) -> None:
        with self.arrived:
            try:
                if response_obj is not None and kwargs.get("user"):
                    self.cloudevents.append(OpenMeterLogger._common_logic(None, kwargs, response_obj))
            finally:
                self.payloads.append(kwargs["standard_logging_object"])
                self.arrived.notify_all()

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._keep(kwargs, response_obj)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._keep(kwargs, None)

    def wait_for(self, n: int) -> list[dict[str, Any]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.payloads) >= n, timeout=30), "litellm never logged"
            return self.payloads[:n]


#: One logger for the module: LiteLLM keeps a single instance per CustomLogger class in its callback lists.
CAPTURE = Capture()


def _run(call) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with CAPTURE.arrived:
        CAPTURE.payloads.clear()
        CAPTURE.cloudevents.clear()
    litellm.callbacks = [CAPTURE]
    call()
    payload = CAPTURE.wait_for(1)[0]
    cloudevents = list(CAPTURE.cloudevents)
    # what a generic_api / Kafka producer would put on the wire
    return orjson.loads(orjson.dumps(payload, default=str)), cloudevents


def _complete(**kwargs):
    return litellm.completion(messages=[{"role": "user", "content": SECRET_PROMPT}], **kwargs)


@pytest.fixture(scope="module")
def openai_success() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return _run(lambda: _complete(
        model="gpt-4o-mini", mock_response=SECRET_ANSWER, metadata=dict(PROXY_METADATA),
        litellm_session_id="agent-run-7", user="end-user-9",
    ))


@pytest.fixture(scope="module")
def anthropic_cached() -> dict[str, Any]:
    """A Claude response whose usage went through LiteLLM's real Anthropic usage transformation."""
    usage = AnthropicConfig().calculate_usage(
        usage_object={"input_tokens": 20, "cache_read_input_tokens": 800, "cache_creation_input_tokens": 100,
                      "output_tokens": 50},
        reasoning_content=None,
    )
    response = litellm.ModelResponse(
        model="claude-sonnet-4-5", choices=[{"message": {"role": "assistant", "content": SECRET_ANSWER}}], usage=usage,
    )
    payload, _ = _run(lambda: _complete(
        model="anthropic/claude-sonnet-4-5", mock_response=response, metadata=dict(PROXY_METADATA),
    ))
    return payload


@pytest.fixture(scope="module")
def failure() -> dict[str, Any]:
    def call():
        with pytest.raises(litellm.exceptions.RateLimitError):
            _complete(
                model="gpt-4o", metadata=dict(PROXY_METADATA),
                mock_response=litellm.RateLimitError("slow down", llm_provider="openai", model="gpt-4o"),
            )

    payload, _ = _run(call)
    return payload


def test_success_attribution_tokens_and_gateway_cost(openai_success):
    payload, _ = openai_success
    assert detect_format(payload) == "litellm"
    [event] = parse_message(orjson.dumps(payload))
    assert event.gateway == "litellm"
    assert event.api_key_hash == PROXY_METADATA["user_api_key_hash"]
    assert event.api_key_alias == "search-agent-prod"
    assert event.user == "ann@example.com"
    assert event.team == "team-search"
    assert event.org == "org-acme"
    assert event.session_id == payload["trace_id"] == "agent-run-7"
    assert event.event_id == payload["litellm_call_id"]
    assert event.model == "gpt-4o-mini" and event.provider == "openai"
    assert event.status is Status.success
    usage = payload["metadata"]["usage_object"]
    assert (event.input_tokens, event.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert event.cost_source is CostSource.gateway
    assert event.cost_usd == Decimal(repr(payload["response_cost"])) > 0
    assert event.latency_ms is not None and event.latency_ms >= 0


def test_prompt_and_response_text_are_dropped(openai_success):
    payload, _ = openai_success
    raw = orjson.dumps(payload)
    assert SECRET_PROMPT.encode() in raw and SECRET_ANSWER.encode() in raw  # litellm does include them
    [event] = parse_message(raw)
    stored = event.model_dump_json()
    assert SECRET_PROMPT not in stored and SECRET_ANSWER not in stored


def test_anthropic_cache_tokens_counted_once(anthropic_cached):
    usage = anthropic_cached["metadata"]["usage_object"]
    # LiteLLM reports the cached tokens twice: inside prompt_tokens and again beside it
    assert usage["prompt_tokens"] == 920 and usage["cache_read_input_tokens"] == 800
    assert usage["prompt_tokens_details"]["cached_tokens"] == 800
    [event] = parse_message(anthropic_cached)
    assert event.input_tokens == 920  # 20 fresh + 800 cache reads + 100 cache writes, each once
    assert event.cache_read_tokens == 800 and event.cache_write_tokens == 100
    assert event.uncached_input_tokens == 20
    assert event.output_tokens == 50
    assert event.cost_source is CostSource.gateway


def test_computed_cost_matches_litellm_for_cached_anthropic(anthropic_cached):
    """Dropping LiteLLM's cost, genai-prices on the normalised tokens gives the same dollars:
    a cached token counted twice (or a cache write billed as plain input) would not."""
    without_cost = {**anthropic_cached, "response_cost": None}
    [event] = parse_message(without_cost)
    assert event.cost_source is CostSource.computed
    assert event.cost_usd == pytest.approx(Decimal(repr(anthropic_cached["response_cost"])), rel=Decimal("1e-9"))
    double_counted, _ = compute_cost(
        "claude-sonnet-4-5", "anthropic", input_tokens=920 + 800, cache_read_tokens=800, cache_write_tokens=100,
        output_tokens=50,
    )
    assert double_counted != event.cost_usd


def test_failure_status_and_error(failure):
    [event] = parse_message(failure)
    assert event.status is Status.failure
    assert event.error_type == failure["error_information"]["error_class"] == "RateLimitError"
    assert event.input_tokens == 0 and event.output_tokens == 0
    assert event.cost_usd == 0  # a rejected request is not billed
    assert event.api_key_hash == PROXY_METADATA["user_api_key_hash"]


def test_generic_api_batch_of_payloads(openai_success, failure):
    """LiteLLM's generic_api logger posts a JSON list of payloads; each becomes an event."""
    payload, _ = openai_success
    events = parse_message(orjson.dumps([payload, failure]))
    assert [e.status for e in events] == [Status.success, Status.failure]


def test_bad_record_in_batch_keeps_the_good_ones(openai_success, failure):
    payload, _ = openai_success
    broken = {**failure, "metadata": {**failure["metadata"], "usage_object": {"prompt_tokens": -5}}}
    with pytest.raises(ParseError) as info:
        parse_message([payload, broken])
    assert info.value.field == "[1].metadata.usage_object.prompt_tokens"
    result = parse_message_partial([payload, broken, failure])
    assert len(result.records) == 2 and len(result.errors) == 1
    assert result.errors[0].field == "[1].metadata.usage_object.prompt_tokens"


def test_missing_key_and_user_is_a_typed_error(openai_success):
    payload, _ = openai_success
    anonymous = {**payload, "end_user": None,
                 "metadata": {k: v for k, v in payload["metadata"].items() if not k.startswith("user_api_key")}}
    with pytest.raises(ParseError) as info:
        parse_message(anonymous)
    assert info.value.error_type == "missing_attribution"
    assert info.value.field == "metadata.user_api_key_hash"


def test_callback_kwargs_wrapper_is_understood(openai_success):
    payload, _ = openai_success
    [event] = parse_message({"standard_logging_object": payload})
    assert event.event_id == payload["litellm_call_id"]


def test_cloudevent_from_litellm_openmeter_integration(openai_success):
    payload, cloudevents = openai_success
    [cloudevent] = cloudevents
    assert cloudevent["type"] == "litellm_tokens"
    [event] = parse_message(orjson.dumps(cloudevent, default=str))
    assert event.user == "end-user-9"  # OpenMeter's subject is the request's end user
    assert event.model == "gpt-4o-mini"
    assert event.input_tokens == payload["prompt_tokens"] and event.output_tokens == payload["completion_tokens"]
    assert event.cost_usd == Decimal(repr(payload["response_cost"])) and event.cost_source is CostSource.gateway


def test_proxy_alias_is_priced_through_litellms_model_map_key(anthropic_cached):
    """Behind the proxy, model may be a team alias; LiteLLM's cost-map key still names the real model."""
    aliased = {**anthropic_cached, "model": "team-default-chat", "response_cost": None}
    [event] = parse_message(aliased)
    assert event.model == "team-default-chat"
    assert event.cost_source is CostSource.computed
    assert event.cost_usd == pytest.approx(Decimal(repr(anthropic_cached["response_cost"])), rel=Decimal("1e-9"))


def test_unknown_model_without_cost_keeps_tokens(openai_success):
    payload, _ = openai_success
    unknown = {**payload, "model": "acme-finetune-v2", "response_cost": None, "model_map_information": None,
               "hidden_params": {}}
    [event] = parse_message(unknown)
    assert event.cost_usd is None and event.cost_source is CostSource.unknown
    assert "acme-finetune-v2" in event.cost_unknown_reason
    assert event.input_tokens == payload["prompt_tokens"]


@pytest.fixture(scope="module")
def routed_and_bare() -> tuple[dict[str, Any], dict[str, Any]]:
    """The same model called as the proxy routes it (``openai/gpt-4o``) and as SDK users write it (``gpt-4o``)."""
    routed, _ = _run(lambda: _complete(model="openai/gpt-4o", mock_response=SECRET_ANSWER, metadata=dict(PROXY_METADATA)))
    bare, _ = _run(lambda: _complete(model="gpt-4o", mock_response=SECRET_ANSWER, metadata=dict(PROXY_METADATA)))
    return routed, bare


def test_a_provider_prefixed_model_is_the_same_model(routed_and_bare):
    """spend_by_model, the mix-drift baselines and the price tiers group by ``model``: one name per model."""
    routed, bare = routed_and_bare
    assert routed["hidden_params"]["litellm_model_name"] == "openai/gpt-4o"
    # what the proxy logs when its deployment is `model: openai/gpt-4o`, and what its OTel spans name
    proxy = {**routed, "model": "openai/gpt-4o", "custom_llm_provider": None}
    attributes = {"gen_ai.request.model": "openai/gpt-4o", "gen_ai.operation.name": "chat",
                  "gen_ai.usage.input_tokens": bare["prompt_tokens"], "gen_ai.usage.output_tokens": bare["completion_tokens"],
                  "metadata.user_api_key_hash": PROXY_METADATA["user_api_key_hash"]}
    span = {"name": "litellm_request", "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "startTimeUnixNano": "1767225600000000000", "endTimeUnixNano": "1767225601000000000",
            "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                           for k, v in attributes.items()]}
    events = [e for p in (routed, bare, proxy) for e in parse_message(orjson.dumps(p))]
    events += parse_message_partial(span).records
    assert len(events) == 4
    assert {(e.model, e.provider) for e in events} == {("gpt-4o", "openai")}
    costs = {e.cost_usd for e in events[:3]}
    assert len(costs) == 1 and costs.pop() > 0  # the same tokens cost the same, priced under the one name


def test_the_gateway_provider_is_kept_beside_the_model(openai_success):
    payload, _ = openai_success
    [event] = parse_message({**payload, "model": "openai/gpt-4o-mini", "custom_llm_provider": "azure"})
    assert (event.model, event.provider) == ("gpt-4o-mini", "azure")
    [event] = parse_message({**payload, "model": "meta-llama/Llama-3.3-70B-Instruct", "response_cost": 0.001})
    assert event.model == "meta-llama/Llama-3.3-70B-Instruct"  # a vendor's own namespace is part of the name
