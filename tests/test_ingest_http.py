"""POST /v1/events and /v1/traces against the real broker: formats, gzip, per-record errors and
dead letters, authentication, limits, durability (503 when Kafka is away), metrics."""

from __future__ import annotations

import base64
import gzip

import aiohttp
import orjson
import pytest
from ingest_support import (
    LITELLM_TOKEN, OTEL_TOKEN, canonical_event, ingest_settings, read_topic, running_ingest, values,
)

from spendwatch.broker import free_port
from spendwatch.schemas.dead_letter import DeadLetter

pytestmark = pytest.mark.kafka

AUTH = {"Authorization": f"Bearer {LITELLM_TOKEN}"}
SECRET = "TOP SECRET PROMPT TEXT"


def litellm_payload(call_id: str, **overrides: object) -> dict:
    """The parts of a LiteLLM StandardLoggingPayload spendwatch reads, plus the text it must never keep."""
    payload = {
        "id": f"chatcmpl-{call_id}", "litellm_call_id": call_id, "trace_id": "sess-lt", "call_type": "acompletion",
        "status": "success", "custom_llm_provider": "openai", "startTime": 1795442387.5, "endTime": 1795442388.0,
        "model": "gpt-4o-mini", "response_cost": 0.0000135,
        "metadata": {"user_api_key_hash": "hash-lt", "user_api_key_user_id": "ann", "user_api_key_team_id": "t1",
                     "usage_object": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}},
        "messages": [{"role": "user", "content": SECRET}],
        "response": {"choices": [{"message": {"content": SECRET, "role": "assistant"}}]},
    }
    payload.update(overrides)
    return payload


async def post(url: str, data: bytes, headers: dict | None = None) -> tuple[int, dict | bytes, aiohttp.typedefs.CIMultiDictProxy]:
    async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=headers or {}) as resp:
        body = await resp.read()
        try:
            return resp.status, orjson.loads(body), resp.headers
        except orjson.JSONDecodeError:
            return resp.status, body, resp.headers


@pytest.fixture
def settings(kafka_bootstrap, unique_prefix):
    return ingest_settings(kafka_bootstrap, unique_prefix)


@pytest.mark.parametrize("shape", ["single", "json_array", "ndjson", "ndjson_gzip"])
async def test_every_body_shape_lands_canonical_and_keyed(settings, kafka_bootstrap, shape):
    events = [canonical_event(i) for i in range(5)]
    if shape == "single":
        events = events[:1]
        body = orjson.dumps(events[0])
    elif shape == "json_array":
        body = orjson.dumps(events)
    else:
        body = b"\n".join(orjson.dumps(e) for e in events) + b"\n"
    headers = {**AUTH, "Content-Type": "application/json"}
    if shape == "ndjson_gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"

    async with running_ingest(settings) as svc:
        status, reply, _ = await post(f"{svc.url}/v1/events", body, headers)
    assert status == 200, reply
    assert reply == {"records": len(events), "accepted": len(events), "rejected": 0, "events": len(events), "errors": []}

    written = await read_topic(kafka_bootstrap, settings.kafka.topics.raw)
    by_id = {v["event_id"]: (m.key, v) for m, v in zip(written, values(written), strict=True)}
    assert set(by_id) == {e["event_id"] for e in events}
    for sent in events:
        key, got = by_id[sent["event_id"]]
        assert key == sent["api_key_hash"].encode()
        assert got["gateway"] == "gw-litellm", "events are stamped with the token's gateway name"
        assert (got["user"], got["team"], got["session_id"]) == (sent["user"], sent["team"], sent["session_id"])
        assert got["input_tokens"] == sent["input_tokens"] and got["cost_usd"] == "0.0012"


async def test_bad_lines_are_dead_lettered_and_good_ones_kept(settings, kafka_bootstrap):
    lines = [
        orjson.dumps(litellm_payload("good-1")),
        b'{"litellm_call_id": "broken", "messages": [{"content": "' + SECRET.encode() + b'"}], oops',
        orjson.dumps(litellm_payload("neg", metadata={"user_api_key_hash": "h", "usage_object": {"prompt_tokens": -5}})),
        orjson.dumps({"hello": "world"}),
        orjson.dumps(canonical_event(7)),
        orjson.dumps(litellm_payload("nobody", metadata={"usage_object": {"prompt_tokens": 1}})),
    ]
    body = b"\n".join(lines)
    async with running_ingest(settings) as svc:
        status, reply, _ = await post(f"{svc.url}/v1/events", body, {**AUTH, "Content-Type": "application/x-ndjson"})
    assert status == 200
    assert (reply["records"], reply["accepted"], reply["rejected"], reply["events"]) == (6, 2, 4, 2)
    errors = {e["line"]: e for e in reply["errors"]}
    assert set(errors) == {2, 3, 4, 6}
    assert errors[2]["error_type"] == "invalid_json"
    assert errors[3]["error_type"] == "validation" and "prompt_tokens" in errors[3]["field"]
    assert errors[4]["error_type"] == "unknown_format"
    assert errors[6]["error_type"] == "missing_attribution"

    raw = values(await read_topic(kafka_bootstrap, settings.kafka.topics.raw))
    assert sorted(v["event_id"] for v in raw) == ["evt-7", "good-1"]
    dead = [DeadLetter.model_validate_json(m.value) for m in await read_topic(kafka_bootstrap, settings.kafka.topics.dead_letters)]
    assert sorted(d.error_type for d in dead) == ["invalid_json", "missing_attribution", "unknown_format", "validation"]
    assert all(d.stage == "ingest" and "gw-litellm" in d.reason for d in dead)
    for letter in dead:
        assert SECRET.encode() not in letter.original, "prompt text must never reach a dead letter"
    assert any(b"broken" in d.original for d in dead), "the original (minus text) is kept for debugging"


async def test_all_records_rejected_is_a_400_with_details(settings, kafka_bootstrap):
    async with running_ingest(settings) as svc:
        status, reply, _ = await post(f"{svc.url}/v1/events", b'[{"a": 1}, 42]', AUTH)
    assert status == 400
    assert [e["index"] for e in reply["errors"]] == [0, 1]
    assert len(await read_topic(kafka_bootstrap, settings.kafka.topics.dead_letters)) == 2


async def test_authentication(settings, kafka_bootstrap):
    body = orjson.dumps(canonical_event(1))
    async with running_ingest(settings) as svc:
        url = f"{svc.url}/v1/events"
        missing = await post(url, body)
        wrong = await post(url, body, {"Authorization": "Bearer not-a-token-at-all"})
        basic = await post(url, body, {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()})
        ok = await post(url, body, {"Authorization": f"Bearer {OTEL_TOKEN}"})
    for status, reply, headers in (missing, wrong, basic):
        assert status == 401 and reply["error"] == "unauthorized"
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert ok[0] == 200
    written = values(await read_topic(kafka_bootstrap, settings.kafka.topics.raw))
    assert [v["gateway"] for v in written] == ["gw-otel"], "only the authenticated request was written"


async def test_limits_and_unsupported_bodies(kafka_bootstrap, unique_prefix):
    settings = ingest_settings(kafka_bootstrap, unique_prefix, max_body_bytes=4096, max_decompressed_bytes=8192,
                               max_records_per_request=3)
    async with running_ingest(settings) as svc:
        url = f"{svc.url}/v1/events"
        big = await post(url, b"[" + b" " * 5000 + b"]", AUTH)
        bomb = await post(url, gzip.compress(b" " * 100_000 + b"{}"), {**AUTH, "Content-Encoding": "gzip"})
        many = await post(url, orjson.dumps([canonical_event(i) for i in range(4)]), AUTH)
        html = await post(url, b"<html/>", {**AUTH, "Content-Type": "text/html"})
        brotli = await post(url, b"xx", {**AUTH, "Content-Encoding": "br"})
        not_gzip = await post(url, b"plain", {**AUTH, "Content-Encoding": "gzip"})
        empty = await post(url, b"  \n", AUTH)
        scalar = await post(url, b'"just a string"', AUTH)
    assert (big[0], big[1]["error"]) == (413, "body_too_large")
    assert (bomb[0], bomb[1]["error"]) == (413, "body_too_large")
    assert (many[0], many[1]["error"]) == (413, "too_many_records")
    assert (html[0], html[1]["error"]) == (415, "unsupported_media_type")
    assert (brotli[0], brotli[1]["error"]) == (415, "unsupported_encoding")
    assert (not_gzip[0], not_gzip[1]["error"]) == (400, "invalid_gzip")
    assert (empty[0], empty[1]["error"]) == (400, "empty_body")
    assert (scalar[0], scalar[1]["error"]) == (400, "invalid_body")
    assert await read_topic(kafka_bootstrap, settings.kafka.topics.raw) == []


async def test_otlp_json_partial_success(settings, kafka_bootstrap):
    def span(span_id: str, attrs: dict) -> dict:
        return {
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "name": "chat",
            "startTimeUnixNano": "1795442387000000000", "endTimeUnixNano": "1795442388000000000",
            "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                           for k, v in attrs.items()],
        }

    genai = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 100,
             "gen_ai.usage.output_tokens": 10, "user.id": "bob", "gen_ai.input.messages": SECRET}
    export = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [
        span("eee19b7ec3c1b174", genai),
        span("eee19b7ec3c1b175", {**genai, "gen_ai.usage.input_tokens": -1}),
        span("eee19b7ec3c1b176", {"http.request.method": "GET"}),
    ]}]}]}
    async with running_ingest(settings) as svc:
        status, reply, headers = await post(f"{svc.url}/v1/traces", orjson.dumps(export),
                                            {"Authorization": f"Bearer {OTEL_TOKEN}", "Content-Type": "application/json"})
        wrong_type = await post(f"{svc.url}/v1/traces", b"x", {"Authorization": f"Bearer {OTEL_TOKEN}",
                                                               "Content-Type": "text/plain"})
        no_auth = await post(f"{svc.url}/v1/traces", orjson.dumps(export), {"Content-Type": "application/json"})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert reply["partialSuccess"]["rejectedSpans"] == "1"
    assert "input_tokens" in reply["partialSuccess"]["errorMessage"]
    assert wrong_type[0] == 415 and no_auth[0] == 401 and no_auth[1]["code"] == 16

    raw = values(await read_topic(kafka_bootstrap, settings.kafka.topics.raw))
    assert [(v["event_id"], v["user"], v["gateway"]) for v in raw] == [
        ("5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174", "bob", "gw-otel")]
    dead = [DeadLetter.model_validate_json(m.value) for m in await read_topic(kafka_bootstrap, settings.kafka.topics.dead_letters)]
    assert len(dead) == 1 and dead[0].error_type == "validation"
    assert b"eee19b7ec3c1b175" in dead[0].original and SECRET.encode() not in dead[0].original


async def test_503_until_kafka_is_reachable(unique_prefix):
    from spendwatch.streams.ingest.auth import GatewayTokens
    from spendwatch.streams.ingest.server import start_ingest

    nowhere = f"127.0.0.1:{free_port()}"
    settings = ingest_settings(nowhere, unique_prefix)
    settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(
        update={"producer": settings.ingest.producer.model_copy(update={"connect_retry_s": 0.2})})})
    svc = await start_ingest(settings, nowhere, GatewayTokens({"gw": LITELLM_TOKEN}), wait_ready=False)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{svc.url}/readyz") as ready:
                assert ready.status == 503
                assert "kafka" in (await ready.json())["checks"]
            async with http.get(f"{svc.url}/healthz") as live:
                assert live.status == 200
        status, reply, headers = await post(f"{svc.url}/v1/events", orjson.dumps(canonical_event(1)), AUTH)
        assert status == 503 and reply["error"] == "kafka_unavailable" and headers["Retry-After"]
    finally:
        await svc.stop()


async def test_metrics_and_readiness(settings):
    async with running_ingest(settings) as svc, aiohttp.ClientSession() as http:
        await post(f"{svc.url}/v1/events", orjson.dumps([canonical_event(1), {"x": 1}]), AUTH)
        async with http.get(f"{svc.url}/readyz") as ready:
            assert ready.status == 200
        async with http.get(f"{svc.url}/metrics") as resp:
            text = await resp.text()
    assert 'spendwatch_ingest_requests_total{endpoint="/v1/events",status="200"}' in text
    assert 'spendwatch_events_in_total{result="ok",source="gw-litellm"}' in text
    assert 'spendwatch_events_in_total{result="dead_letter",source="gw-litellm"}' in text
    assert 'spendwatch_dead_letters_total{error_type="unknown_format",stage="ingest"}' in text
