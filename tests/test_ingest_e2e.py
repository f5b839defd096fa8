"""End to end: real gateway clients -> ingest -> raw topic -> stream worker -> alerts topic.

A runaway agent loop (one session calling an expensive model over and over) is sent through
the real LiteLLM ``generic_api`` callback, and another through the real OpenTelemetry SDK
exporter, mixed with ordinary traffic. Both must come out of a real ``spendwatch worker``
process as ``session_burn`` pages for the right subject, and the ordinary traffic must not
page. The session threshold is tuned in the YAML file, as a user would.
"""

from __future__ import annotations

import asyncio

import litellm
import pytest
import yaml
from ingest_clients import RecordingExporter, configure_generic_api, flush_litellm, fresh_litellm_callbacks, proxy_metadata
from ingest_support import LITELLM_TOKEN, OTEL_TOKEN, read_topic, running_ingest
from litellm import ModelResponse
from litellm.types.utils import Usage
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from streams_kit import WorkerProcess, consume_until, write_config

from spendwatch.config import load_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

litellm_callbacks = pytest.fixture(fresh_litellm_callbacks)

SESSION_THRESHOLD_USD = "2"
LOOP_CALLS = 8  # x $0.58 (200k input + 8k output tokens of gpt-4o) = $4.64 in minutes, over the $2 threshold


def expensive_response() -> ModelResponse:
    return ModelResponse(model="gpt-4o", choices=[{"message": {"role": "assistant", "content": "again"}}],
                         usage=Usage(prompt_tokens=200_000, completion_tokens=8_000, total_tokens=208_000))


async def litellm_traffic(endpoint: str) -> int:
    configure_generic_api("spendwatch", endpoint, LITELLM_TOKEN, "ndjson")
    calls = 0
    for key in ("hash-calm-1", "hash-calm-2"):
        for _ in range(2):
            await litellm.acompletion(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                      mock_response="hello", metadata=proxy_metadata(key, key, "ann", "team-a"),
                                      litellm_session_id=f"{key}-s")
            calls += 1
    for _ in range(LOOP_CALLS):
        await litellm.acompletion(model="gpt-4o", messages=[{"role": "user", "content": "retry the tool"}],
                                  mock_response=expensive_response(),
                                  metadata=proxy_metadata("hash-runaway", "agent-bot", "rex", "team-agents"),
                                  litellm_session_id="runaway-loop-1")
        calls += 1
    await flush_litellm(calls)
    return calls


def otel_traffic(endpoint: str) -> list[SpanExportResult]:
    exporter = RecordingExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {OTEL_TOKEN}"}, timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": "edge-gateway"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("gateway")

    def call(user: str, session: str, cost: float) -> None:
        with tracer.start_as_current_span("chat claude-sonnet-4-5") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                                 "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 150_000,
                                 "gen_ai.usage.output_tokens": 4_000, "gen_ai.usage.cost": cost,
                                 "user.id": user, "session.id": session})

    for _ in range(3):
        call("calm-otel-user", "calm-conv", 0.01)
    for _ in range(LOOP_CALLS):
        call("looper", "otel-loop-1", 0.6)
    with tracer.start_as_current_span("GET /healthz") as span:
        span.set_attribute("http.request.method", "GET")
    provider.force_flush(10_000)
    provider.shutdown()
    return exporter.results


def session_burn_triggers(alerts: list[dict]) -> dict[str, dict]:
    return {a["subject"]: a for a in alerts if a["detector"] == "session_burn" and a["action"] == "trigger"}


async def test_runaway_loops_from_litellm_and_otel_end_as_alerts(
        litellm_callbacks, kafka_bootstrap, unique_prefix, tmp_path):
    path, config = write_config(tmp_path, kafka_bootstrap, unique_prefix)
    config["detectors"] = {"session_burn": {"threshold_usd": SESSION_THRESHOLD_USD}}
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path)
    settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"port": 0})})

    with WorkerProcess(path, tmp_path) as worker:
        async with running_ingest(settings) as svc:
            await litellm_traffic(f"{svc.url}/v1/events")
            results = await asyncio.to_thread(otel_traffic, f"{svc.url}/v1/traces")
            assert results and all(r is SpanExportResult.SUCCESS for r in results)

        wanted = {"hash-runaway", "user:looper"}
        try:
            alerts = await consume_until(
                kafka_bootstrap, settings.kafka.topics.alerts, lambda got: wanted <= set(session_burn_triggers(got)),
                timeout=150, alive=worker.alive)
        except (TimeoutError, RuntimeError) as exc:
            topics = settings.kafka.topics
            counts = {t: len(await read_topic(kafka_bootstrap, t)) for t in (topics.raw, topics.events, topics.dead_letters)}
            raise AssertionError(f"{exc}\nmessages (read_committed): {counts}\n"
                                 f"--- worker log (tail) ---\n{worker.log()[-6000:]}") from exc

    triggers = session_burn_triggers(alerts)
    runaway = triggers["hash-runaway"]
    assert runaway["scope"] == "key" and runaway["observed"] > float(SESSION_THRESHOLD_USD)
    assert "runaway-loop-1" in str(runaway), "the page names the burning session"
    assert "otel-loop-1" in str(triggers["user:looper"])
    paged = {a["subject"] for a in alerts}
    assert not paged & {"hash-calm-1", "hash-calm-2", "user:calm-otel-user"}, "ordinary traffic does not page"
