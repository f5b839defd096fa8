"""Fuzzed request bodies through ingest's HTTP body splitting and the worker's parse stage (issue 16).

Bodies are arbitrary bytes, or realistic payloads (canonical events, LiteLLM payloads, OTel
spans, free JSON) whose fields are mutated -- dates from year 1 to 9999, costs negative, NaN,
huge or with 20 decimals, deep nesting -- shaped as an object, an array or NDJSON, then
sometimes cut at a random byte, corrupted, NaN-injected or gzipped. Every prompt, response
and error text carries a marker. For every body:

* ingest never answers 5xx;
* every rejected record is dead-lettered, and no dead letter (original or reason) and no
  event written carries a marker;
* every accepted event has a time inside the accepted window and a sane cost: null exactly
  when unpriced, else 0 to $100,000 with at most 12 decimals.

``SPENDWATCH_FUZZ_EXAMPLES`` raises the number of bodies (default 250 over HTTP, 400 through
the worker's parse stage, a few seconds each); the figures in docs/operations.md come from
``SPENDWATCH_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_bodies.py -s``.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spendwatch.schemas.dead_letter import DeadLetter
from spendwatch.schemas.event import MAX_COST_USD
from spendwatch.streams.ingest.auth import GatewayTokens
from spendwatch.streams.ingest.server import IngestService, serve
from spendwatch.streams.pipeline import RawMessage, parse_batch

from ingest_offline import RecordingProducer, offline_settings

MARKER = "PROMPTMARKER"
EXAMPLES = int(os.environ.get("SPENDWATCH_FUZZ_EXAMPLES", "0"))
TEXT_KEYS = ("messages", "content", "prompt", "response", "completion", "text", "error_message", "input",
             "choices", "traceback")

# --- bodies ----------------------------------------------------------------------------------

secret_text = st.integers(0, 10**6).map(lambda n: f"{MARKER}-{n} what is my password")
times = st.one_of(
    st.just("now"), st.just("now"), st.just("now"),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(["9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "yesterday", ""]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10**12, 10**13),
)
costs = st.one_of(
    st.decimals(min_value=0, max_value=200_000, places=20, allow_nan=False).map(str),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1, max_value=1e6),
    st.sampled_from(["-0.5", "NaN", "1e400", "0", "0.0", "abc", None, True]),
)


# "now" is written as same-length placeholders, replaced when a body is sent: a strategy must not read the clock
NOW_ISO = "2000-01-01T00:00:00.123456Z"  # the format of datetime.now(UTC).strftime(...) below
NOW_EPOCH = 1111111111.125
NOW_NANOS = 1111111111125000000


def _when(value: object) -> object:
    return NOW_ISO if value == "now" else value


def _epoch(value: object) -> object:
    return NOW_EPOCH if value == "now" else value


def materialize(case: tuple[bytes, bool, float | None]) -> tuple[bytes, bool]:
    """The body to send: "now" filled in, gzipped and cut as drawn."""
    body, zipped, cut = case
    now = datetime.now(UTC).timestamp() - 30
    body = (body.replace(NOW_ISO.encode(), datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode())
            .replace(repr(NOW_EPOCH).encode(), f"{now:.3f}".encode())
            .replace(str(NOW_NANOS).encode(), str(int(now * 1e9)).encode()))
    if zipped:
        body = gzip.compress(body)
        if cut is not None:
            body = body[: int(len(body) * cut)]
    return body, zipped


@st.composite
def canonical(draw) -> dict:
    event = {"event_id": f"e{draw(st.integers(0, 50))}", "event_time": _when(draw(times)), "gateway": "fuzz",
             "api_key_hash": draw(st.sampled_from(["k1", "k2", None])), "user": draw(st.sampled_from(["ann", None])),
             "model": draw(st.sampled_from(["gpt-4o", "gpt-4o-mini", "my-private-model", ""])),
             "input_tokens": draw(st.integers(0, 10**5) | st.integers(-5, 10**9)),
             "output_tokens": draw(st.integers(0, 5000))}
    if draw(st.booleans()):
        event["cost_usd"] = draw(costs)
    if draw(st.booleans()):
        event[draw(st.sampled_from(TEXT_KEYS))] = draw(secret_text)  # extra="forbid": rejected, text and all
    return event


@st.composite
def litellm(draw) -> dict:
    start = _epoch(draw(times))
    payload = {
        "litellm_call_id": f"c{draw(st.integers(0, 50))}", "call_type": "acompletion",
        "status": draw(st.sampled_from(["success", "failure"])), "custom_llm_provider": "openai",
        "model": draw(st.sampled_from(["gpt-4o", "my-private-model"])), "startTime": start, "endTime": start,
        "response_cost": draw(costs), "cache_hit": draw(st.booleans()),
        "metadata": {"user_api_key_hash": draw(st.sampled_from(["h1", None])),
                     "usage_object": {"prompt_tokens": draw(st.integers(0, 10**6)),
                                      "completion_tokens": draw(st.integers(-1, 10**4))}},
        "messages": [{"role": "user", "content": draw(secret_text)}],
        "response": {"choices": [{"message": {"content": draw(secret_text)}}]},
        "error_information": {"error_class": "BadRequestError", "error_message": draw(secret_text)},
    }
    return payload


@st.composite
def otel_span(draw) -> dict:
    when = draw(times)
    nanos = NOW_NANOS if when == "now" else (
        int(when * 1e9) if isinstance(when, int | float) and abs(when) < 9e9 else when)

    def attr(key: str, value: object) -> dict:
        kind = "intValue" if isinstance(value, int) else "stringValue"
        return {"key": key, "value": {kind: value}}

    span = {"name": "chat", "startTimeUnixNano": nanos, "endTimeUnixNano": nanos,
            "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
            "attributes": [attr("gen_ai.request.model", draw(st.sampled_from(["gpt-4o", "x-model"]))),
                           attr("gen_ai.usage.input_tokens", draw(st.integers(0, 10**6))),
                           attr("gen_ai.usage.output_tokens", draw(st.integers(0, 1000))),
                           attr("spendwatch.key_hash", "k1"),
                           attr("gen_ai.input.messages", draw(secret_text)),
                           attr("gen_ai.prompt.0.content", draw(secret_text))]}
    return {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [span]}]}]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["model", "id", "usage", "x", *TEXT_KEYS]), inner, max_size=4),
    max_leaves=12,
).map(lambda v: {"model": "m", "content": MARKER, "nested": v})

records = st.one_of(canonical(), litellm(), otel_span(), json_values)


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@st.composite
def bodies(draw) -> tuple[bytes, bool, float | None]:
    """(body, gzipped, where to cut the gzipped body): see :func:`materialize`."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300)), False, None
    items = draw(st.lists(records, min_size=1, max_size=6))
    lines = [orjson.dumps(item, default=str) for item in items]
    shape = draw(st.sampled_from(["object", "array", "ndjson"]))
    body = lines[0] if shape == "object" else (
        b"[" + b",".join(lines) + b"]" if shape == "array" else b"\n".join(lines))
    corruption = draw(st.sampled_from(["none", "none", "cut", "byte", "nan", "deep"]))
    if corruption == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif corruption == "byte" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1:]
    elif corruption == "nan":
        body = body.replace(b'"response_cost":', b'"response_cost":NaN,"was":', 1).replace(b"0.0", b"NaN", 1)
    elif corruption == "deep":
        body = body + b"\n" + _deep(draw(st.integers(200, 1100)))
    zipped = draw(st.integers(0, 4)) == 0
    cut = draw(st.one_of(st.none(), st.floats(0, 1))) if zipped else None
    return body, zipped, cut


# --- checks ----------------------------------------------------------------------------------

def no_marker(data: bytes | str) -> None:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    assert MARKER not in text, text[:2000]


def sane_event(event: dict, window: tuple[float, float]) -> None:
    if "outcome_id" in event:
        return
    when = datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")).timestamp()
    assert window[0] <= when <= window[1], event["event_time"]
    cost = event.get("cost_usd")
    assert (cost is None) == (event["cost_source"] == "unknown"), event
    if cost is not None:
        from decimal import Decimal

        amount = Decimal(cost)
        assert 0 <= amount <= MAX_COST_USD and amount.as_tuple().exponent >= -12, cost


# --- ingest over HTTP ------------------------------------------------------------------------

class _Server:
    """The ingest application on a loopback port, served from a background event loop."""

    def __init__(self) -> None:
        self.settings = offline_settings()
        self.producer = RecordingProducer()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        service = IngestService(self.settings, self.producer, GatewayTokens({"fuzz": "tok-fuzz-0123456789"}))
        self.runner, self.port = asyncio.run_coroutine_threadsafe(serve(service, "127.0.0.1", 0), self.loop).result()

    def post(self, body: bytes, gzipped: bool) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": "Bearer tok-fuzz-0123456789", "Content-Type": "application/json"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        conn.request("POST", "/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        conn.close()
        return response.status, answer

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def server():
    running = _Server()
    yield running
    running.close()


def test_fuzzed_bodies_over_http_never_5xx_leak_text_or_accept_insane_events(server) -> None:
    statuses: Counter = Counter()
    topics = server.settings.kafka.topics

    @settings(max_examples=EXAMPLES or 250, deadline=None, derandomize=not EXAMPLES,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(bodies())
    def run(case: tuple[bytes, bool, float | None]) -> None:
        body, gzipped = materialize(case)
        before = len(server.producer.messages)
        status, answer = server.post(body, gzipped)
        statuses[status] += 1
        assert status < 500, answer[:500]
        now = time.time()
        written = server.producer.messages[before:]
        letters = [DeadLetter.model_validate_json(m.value) for m in written if m.topic == topics.dead_letters]
        events = [orjson.loads(m.value) for m in written if m.topic == topics.raw]
        for letter in letters:
            no_marker(letter.original)
            no_marker(letter.reason)
        window = server.settings.adapters.event_time.bounds(now)
        for event in events:
            no_marker(orjson.dumps(event))
            sane_event(event, (window[0] - 60, window[1] + 60))
        if status in (200, 400) and answer.startswith(b"{") and b'"records"' in answer:
            result = orjson.loads(answer)
            assert result["accepted"] + result["rejected"] == result["records"]
            rejected = {e["index"] for e in result["errors"]}
            assert len(letters) >= len(rejected) == result["rejected"]
        else:
            assert not events

    run()
    print(f"\nfuzzed {sum(statuses.values())} bodies over HTTP: statuses {dict(sorted(statuses.items()))}")
    assert statuses[200] and statuses[400]


# --- the worker's parse stage ----------------------------------------------------------------

def test_fuzzed_messages_through_the_worker_parse_stage() -> None:
    adapters = offline_settings().adapters
    outcomes: Counter = Counter()

    @settings(max_examples=(EXAMPLES or 400), deadline=None, derandomize=not EXAMPLES,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(st.lists(bodies(), min_size=1, max_size=4))
    def run(cases: list[tuple[bytes, bool, float | None]]) -> None:
        messages = [RawMessage(materialize(case)[0], "raw", 0, offset) for offset, case in enumerate(cases)]
        batch = parse_batch(messages, adapters)  # must not raise
        outcomes["records"] += len(batch.records)
        outcomes["dead letters"] += len(batch.dead_letters)
        window = adapters.event_time.bounds(time.time())
        for letter in batch.dead_letters:
            no_marker(letter.original)
            no_marker(letter.reason)
        parsed_offsets = {letter.source_offset for letter in batch.dead_letters}
        for data in batch.record_json:
            no_marker(data)
            sane_event(orjson.loads(data), (window[0] - 60, window[1] + 60))
        assert len(parsed_offsets) <= len(messages)

    run()
    print(f"\nfuzzed worker parse stage: {dict(outcomes)}")
    assert outcomes["records"] and outcomes["dead letters"]
