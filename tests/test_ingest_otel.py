"""The real OpenTelemetry SDK exporting GenAI spans over OTLP/HTTP (protobuf) to /v1/traces.

A tracer provider with the SDK's ``OTLPSpanExporter`` behind a ``BatchSpanProcessor``, as an
instrumented gateway or application would run it. GenAI spans (``gen_ai.*`` attributes)
must land in the raw topic as canonical events; the HTTP span beside them is ignored; a
GenAI span with a corrupt token count is dead-lettered and reported as partial success.
"""

from __future__ import annotations

import asyncio

import pytest
from ingest_clients import RecordingExporter
from ingest_support import OTEL_TOKEN, ingest_settings, read_topic, running_ingest, values
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from spendwatch.schemas.dead_letter import DeadLetter

pytestmark = pytest.mark.kafka

SECRET = "PROMPT TEXT THAT MUST NOT BE KEPT"

#: (user, session, model, input tokens, cache reads, output tokens, cost reported by the gateway)
CALLS = [
    ("ann", "conv-1", "gpt-4o", 1200, 200, 300, 0.006),
    ("ann", "conv-1", "gpt-4o", 1500, 1000, 250, 0.005),
    ("bob", "conv-2", "claude-sonnet-4-5", 3000, 0, 800, 0.021),
]


def emit_spans(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("gateway.instrumentation", "1.0")
    for user, session, model, inp, cached, out, cost in CALLS:
        with tracer.start_as_current_span(f"chat {model}") as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": inp, "gen_ai.usage.cache_read.input_tokens": cached,
                "gen_ai.usage.output_tokens": out, "gen_ai.usage.cost": cost,
                "user.id": user, "session.id": session, "gen_ai.input.messages": SECRET,
            })
    with tracer.start_as_current_span("GET /healthz") as span:
        span.set_attributes({"http.request.method": "GET", "url.path": "/healthz", "http.response.status_code": 200})
    with tracer.start_as_current_span("chat broken") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                             "gen_ai.usage.input_tokens": -7, "gen_ai.usage.output_tokens": 1, "user.id": "ann"})


@pytest.mark.parametrize("compression", [Compression.Gzip, Compression.NoCompression])
async def test_otel_sdk_genai_spans_land_and_others_are_ignored(kafka_bootstrap, unique_prefix, compression):
    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    async with running_ingest(settings) as svc:
        exporter = RecordingExporter(endpoint=f"{svc.url}/v1/traces", headers={"Authorization": f"Bearer {OTEL_TOKEN}"},
                                     compression=compression, timeout=10)
        provider = TracerProvider(resource=Resource.create({"service.name": "edge-gateway"}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        emit_spans(provider)
        # The exporter is synchronous HTTP; run it off the loop that serves the receiver.
        assert await asyncio.to_thread(provider.force_flush, 10_000)
        await asyncio.to_thread(provider.shutdown)
    assert exporter.results and all(r is SpanExportResult.SUCCESS for r in exporter.results)

    events = values(await read_topic(kafka_bootstrap, settings.kafka.topics.raw))
    assert len(events) == len(CALLS), "GenAI spans only: the HTTP span is ignored, the corrupt one dead-lettered"
    got = sorted((e["user"], e["session_id"], e["model"], e["input_tokens"], e["cache_read_tokens"],
                  e["output_tokens"], float(e["cost_usd"])) for e in events)
    assert got == sorted(CALLS)
    assert {e["gateway"] for e in events} == {"gw-otel"}
    assert all(len(e["event_id"]) == 32 + 1 + 16 for e in events), "trace id and span id, in hex"

    (letter,) = [DeadLetter.model_validate_json(m.value)
                 for m in await read_topic(kafka_bootstrap, settings.kafka.topics.dead_letters)]
    assert letter.stage == "ingest" and letter.error_type == "validation"
    assert "input_tokens" in (letter.field or "") and b"chat broken" in letter.original


async def test_otel_sdk_without_token_fails_the_export(kafka_bootstrap, unique_prefix):
    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    async with running_ingest(settings) as svc:
        exporter = RecordingExporter(endpoint=f"{svc.url}/v1/traces", timeout=5)
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        emit_spans(provider)
        await asyncio.to_thread(provider.force_flush, 10_000)
        await asyncio.to_thread(provider.shutdown)
    assert exporter.results and all(r is SpanExportResult.FAILURE for r in exporter.results)
    assert await read_topic(kafka_bootstrap, settings.kafka.topics.raw) == []
