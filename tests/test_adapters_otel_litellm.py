"""LiteLLM's own OpenTelemetry callback -> OTLP protobuf -> OTLP/JSON -> canonical events.

The spans come from the real ``litellm`` OpenTelemetry integration (exporter swapped for an
in-memory one), are encoded by the real OTLP exporter's encoder and decoded with protobuf's
MessageToDict, as the ingest service does. No network I/O.
"""

from __future__ import annotations

import os
import threading
from decimal import Decimal

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spendwatch.schemas.adapters import parse_message
from spendwatch.schemas.event import CostSource

litellm = pytest.importorskip("litellm")
from litellm.integrations.opentelemetry import OpenTelemetry, OpenTelemetryConfig  # noqa: E402


class _SignallingExporter(InMemorySpanExporter):
    """In-memory exporter that signals once LiteLLM's request span is exported (LiteLLM logs off-thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.request_exported = threading.Event()

    def export(self, spans):  # type: ignore[no-untyped-def]
        result = super().export(spans)
        if any(span.name == "litellm_request" for span in spans):
            self.request_exported.set()
        return result


def test_litellm_otel_spans_become_attributed_events():
    exporter = _SignallingExporter()
    litellm.callbacks = [OpenTelemetry(config=OpenTelemetryConfig(exporter=exporter))]
    metadata = {"user_api_key_hash": "hash-otel-1", "user_api_key_alias": "nightly-agent",
                "user_api_key_user_id": "carol", "user_api_key_team_id": "team-infra", "user_api_key_org_id": "acme"}
    try:
        litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "otel secret prompt"}],
                           mock_response="otel secret answer", metadata=metadata)
        assert exporter.request_exported.wait(30), "litellm exported no span"
    finally:
        litellm.callbacks = []
    spans = exporter.get_finished_spans()
    request = MessageToDict(encode_spans(spans))
    events = parse_message(request)
    assert len(events) == 1  # raw_gen_ai_request and other non-GenAI spans are skipped
    [event] = events
    llm_span = next(s for s in spans if s.name == "litellm_request")
    assert event.api_key_hash == "hash-otel-1" and event.api_key_alias == "nightly-agent"
    assert (event.user, event.team, event.org) == ("carol", "team-infra", "acme")
    assert event.model == "gpt-4o-mini" and event.provider == "openai"
    assert event.input_tokens == llm_span.attributes["gen_ai.usage.input_tokens"]
    assert event.output_tokens == llm_span.attributes["gen_ai.usage.output_tokens"]
    assert event.cost_source is CostSource.gateway
    assert event.cost_usd == Decimal(repr(llm_span.attributes["gen_ai.cost.total_cost"]))
    assert "otel secret" not in event.model_dump_json()
