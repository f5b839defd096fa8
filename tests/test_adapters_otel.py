"""OTel GenAI spans made with the real OpenTelemetry SDK, encoded by the real OTLP exporter's encoder,
turned into OTLP/JSON with protobuf's MessageToDict — exactly what the ingest service hands the adapter."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from spendwatch.schemas.adapters import parse_message, parse_message_partial
from spendwatch.schemas.adapters.config import AdaptersConfig, OtelAttributesConfig
from spendwatch.schemas.adapters.otel import events_from_otlp
from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import CostSource
from spendwatch.schemas.event import Status as EventStatus
from spendwatch.schemas.pricing import compute_cost


def export(spans_spec, resource=None, preserving_proto_field_name=False) -> dict:
    """Record spans with the SDK; return the OTLP/JSON ExportTraceServiceRequest."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "agent"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for name, attributes, error in spans_spec:
        with tracer.start_as_current_span(name, attributes=attributes) as span:
            if error:
                span.set_status(Status(StatusCode.ERROR, error))
    request = encode_spans(exporter.get_finished_spans())
    return MessageToDict(request, preserving_proto_field_name=preserving_proto_field_name)


CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.usage.input_tokens": 920,
    "gen_ai.usage.cache_read.input_tokens": 800,
    "gen_ai.usage.cache_creation.input_tokens": 100,
    "gen_ai.usage.output_tokens": 50,
    "gen_ai.conversation.id": "conv-1",
    "user.id": "ann",
    "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "secret prompt"}]}]',
}


def test_genai_spans_become_events_and_others_are_skipped():
    request = export([
        ("chat claude", CHAT, None),
        ("GET /health", {"http.request.method": "GET"}, None),
        ("chat gpt", {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
                      "gen_ai.usage.prompt_tokens": 1000, "gen_ai.usage.completion_tokens": 100,
                      "spendwatch.key_hash": "k1"}, None),
    ], resource={"service.name": "agent", "spendwatch.team": "search"})
    assert isinstance(request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"], str)
    events = events_from_otlp(request, AdaptersConfig())
    assert len(events) == 2
    claude, gpt = events
    assert claude.model == "claude-sonnet-4-5" and claude.provider == "anthropic"
    assert (claude.input_tokens, claude.cache_read_tokens, claude.cache_write_tokens, claude.output_tokens) == (
        920, 800, 100, 50)
    assert claude.session_id == "conv-1" and claude.user == "ann"
    assert claude.team == "search"  # from the resource
    assert claude.cost_source is CostSource.computed
    expected, _ = compute_cost("claude-sonnet-4-5", "anthropic", input_tokens=920, cache_read_tokens=800,
                               cache_write_tokens=100, output_tokens=50)
    assert claude.cost_usd == expected == Decimal("0.001425")
    span = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert claude.event_id == f"{bytes.fromhex(claude.event_id.split(':')[0]).hex()}:{claude.event_id.split(':')[1]}"
    assert len(claude.event_id) == 32 + 1 + 16 and span["traceId"]  # hex ids, whatever MessageToDict emitted
    # deprecated attribute names
    assert gpt.provider == "openai" and gpt.api_key_hash == "k1"
    assert (gpt.input_tokens, gpt.output_tokens) == (1000, 100)
    assert gpt.latency_ms is not None and gpt.latency_ms >= 0
    assert "secret prompt" not in claude.model_dump_json()


def test_snake_case_form_and_parse_message_detection():
    request = export([("chat", CHAT, None)], preserving_proto_field_name=True)
    assert "resource_spans" in request
    [event] = parse_message(orjson.dumps(request))
    assert event.gateway == "otel" and event.input_tokens == 920


def test_anthropic_style_exclusive_input_is_not_undercounted():
    """Some instrumentations report Anthropic's raw input_tokens (cache excluded)."""
    attrs = {**CHAT, "gen_ai.usage.input_tokens": 20}
    [event] = events_from_otlp(export([("chat", attrs, None)]), AdaptersConfig())
    assert event.input_tokens == 920 and event.uncached_input_tokens == 20


def test_error_span_is_a_failure():
    attrs = {**CHAT, "gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0,
             "gen_ai.usage.cache_read.input_tokens": 0, "gen_ai.usage.cache_creation.input_tokens": 0,
             "error.type": "rate_limit_exceeded"}
    [event] = events_from_otlp(export([("chat", attrs, "429")]), AdaptersConfig())
    assert event.status is EventStatus.failure and event.error_type == "rate_limit_exceeded"
    assert event.cost_usd == 0


def test_attribute_names_are_configurable():
    config = AdaptersConfig(otel=OtelAttributesConfig(key_hash=["acme.key"], team=["acme.squad"]))
    attrs = {**CHAT, "acme.key": "kk", "acme.squad": "payments"}
    [event] = events_from_otlp(export([("chat", attrs, None)]), config)
    assert event.api_key_hash == "kk" and event.team == "payments"


def test_cost_attribute_is_used_as_gateway_cost():
    [event] = events_from_otlp(export([("chat", {**CHAT, "gen_ai.usage.cost": 0.5}, None)]), AdaptersConfig())
    assert event.cost_usd == Decimal("0.5") and event.cost_source is CostSource.gateway


def test_unknown_model_keeps_tokens_with_null_cost():
    [event] = events_from_otlp(
        export([("chat", {**CHAT, "gen_ai.request.model": "acme-internal-llm-v3"}, None)]), AdaptersConfig())
    assert event.cost_usd is None and event.cost_source is CostSource.unknown
    assert "acme-internal-llm-v3" in event.cost_unknown_reason
    assert event.input_tokens == 920


def test_bad_span_is_reported_and_neighbours_kept():
    request = export([("a", CHAT, None), ("b", CHAT, None), ("c", CHAT, None)])
    spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for attr in spans[1]["attributes"]:
        if attr["key"] == "gen_ai.usage.output_tokens":
            attr["value"] = {"intValue": "-7"}
    with pytest.raises(ParseError) as info:
        events_from_otlp(request, AdaptersConfig())
    assert info.value.field.endswith("spans[1].attributes.gen_ai.usage.output_tokens")
    errors: list[ParseError] = []
    assert len(events_from_otlp(request, AdaptersConfig(), errors)) == 2
    assert len(errors) == 1 and "must be >= 0" in errors[0].reason
    assert len(parse_message_partial(request).records) == 2


def test_span_without_attribution_is_rejected():
    attrs = {k: v for k, v in CHAT.items() if k != "user.id"}
    errors: list[ParseError] = []
    assert events_from_otlp(export([("chat", attrs, None)]), AdaptersConfig(), errors) == []
    assert errors[0].error_type == "missing_attribution"
