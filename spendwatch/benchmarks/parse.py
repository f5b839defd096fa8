"""Parse throughput per gateway format, against plain ``orjson.loads`` of the same bytes.

Run: ``.venv/bin/python -m spendwatch.benchmarks.parse [--n 20000] [--repeat 3]``

Prints events per CPU-second for each format through :func:`parse_message` (and the canonical fast path
:func:`~spendwatch.schemas.adapters.canonical.parse_event`), next to the reference rate of just
decoding the same messages with orjson, measured in the same run.

Then the worker's parse stage, :func:`~spendwatch.streams.pipeline.parse_batch` over fetches of
``--fetch`` canonical messages, three ways interleaved ``--repeat`` times: the per-message path
(``fast_path=False``, what the stage did before), the batch loop it uses now, and a candidate that
validates the whole fetch at once with ``TypeAdapter(list[GatewayEvent]).validate_json`` over the
joined messages (measured, not used: see docs/streaming.md, "Parsing"). A busy machine moves the
absolute figures; compare the ratios of one repeat.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

import spendwatch.schemas
from spendwatch.schemas.adapters import dumps, parse_message
from spendwatch.schemas.adapters.canonical import parse_event
from spendwatch.schemas.adapters.config import AdaptersConfig
from spendwatch.schemas.event import GatewayEvent
from spendwatch.streams.pipeline import ParsedBatch, RawMessage, parse_batch, parse_message_into

SAMPLES = Path(spendwatch.schemas.__file__).resolve().parent / "samples"
MODELS = [("gpt-4o-mini", "openai"), ("claude-sonnet-4-5", "anthropic"), ("gpt-4o", "openai"),
          ("gemini-2.0-flash", "google")]


def canonical_messages(n: int, with_cost: bool = True) -> list[bytes]:
    out = []
    for i in range(n):
        model, provider = MODELS[i % len(MODELS)]
        event = {
            "event_id": f"evt-{i}", "event_time": f"2026-03-01T12:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "gateway": "litellm", "api_key_hash": f"key-{i % 500}", "user": f"user-{i % 2000}", "team": "search",
            "session_id": f"run-{i % 10000}", "model": model, "provider": provider, "input_tokens": 1200 + i % 300,
            "cache_read_tokens": 800, "output_tokens": 150, "latency_ms": 812.5,
        }
        if with_cost:
            event |= {"cost_usd": "0.00123", "cost_source": "gateway"}
        out.append(orjson.dumps(event))
    return out


def litellm_messages(n: int) -> list[bytes]:
    base = orjson.loads((SAMPLES / "litellm_standard_logging_payload.json").read_bytes())
    out = []
    for i in range(n):
        payload = copy.deepcopy(base)
        payload["litellm_call_id"] = f"call-{i}"
        payload["metadata"]["user_api_key_hash"] = f"key-{i % 500}"
        payload["metadata"]["usage_object"]["prompt_tokens"] = 1000 + i % 500
        out.append(orjson.dumps(payload))
    return out


def otlp_messages(n_spans: int, spans_per_export: int = 100) -> list[bytes]:
    def attr(key: str, value: Any) -> dict[str, Any]:
        if isinstance(value, int):
            return {"key": key, "value": {"intValue": str(value)}}
        return {"key": key, "value": {"stringValue": value}}

    out = []
    for start in range(0, n_spans, spans_per_export):
        spans = []
        for i in range(start, min(n_spans, start + spans_per_export)):
            model, provider = MODELS[i % len(MODELS)]
            spans.append({
                "traceId": f"{i:032x}", "spanId": f"{i:016x}", "name": f"chat {model}", "kind": "SPAN_KIND_CLIENT",
                "startTimeUnixNano": str(1_772_366_400_000_000_000 + i * 1_000_000),
                "endTimeUnixNano": str(1_772_366_400_800_000_000 + i * 1_000_000),
                "attributes": [
                    attr("gen_ai.operation.name", "chat"), attr("gen_ai.provider.name", provider),
                    attr("gen_ai.request.model", model), attr("gen_ai.usage.input_tokens", 1200),
                    attr("gen_ai.usage.cache_read.input_tokens", 800), attr("gen_ai.usage.output_tokens", 150),
                    attr("gen_ai.conversation.id", f"conv-{i % 1000}"), attr("user.id", f"user-{i % 2000}"),
                ],
                "status": {},
            })
        out.append(orjson.dumps({"resourceSpans": [{
            "resource": {"attributes": [attr("service.name", "agent"), attr("spendwatch.team", "search")]},
            "scopeSpans": [{"scope": {"name": "genai"}, "spans": spans}],
        }]}))
    return out


def rate(fn: Callable[[bytes], Any], messages: list[bytes], events_per_message: int = 1) -> float:
    fn(messages[0])  # warm caches (price lookups) as a long-running worker would have them
    start = time.process_time()  # CPU time: figures stay comparable on a shared, busy machine
    for m in messages:
        fn(m)
    elapsed = time.process_time() - start
    return len(messages) * events_per_message / elapsed


_EVENTS = TypeAdapter(list[GatewayEvent])


def joined_batch(messages: list[RawMessage], adapters: AdaptersConfig, now: float) -> ParsedBatch:
    """The candidate: one ``validate_json`` over the fetch joined into a JSON array, per message on any failure.

    Not exact for hostile input (a message holding one object and the start of a second, next to one that ends
    it, gives one record each although neither is valid JSON alone), one reason it is not the worker's path."""
    out = ParsedBatch()
    window = adapters.event_time
    oldest, latest = window.bounds(now)
    fast = [type(m.value) is bytes and len(m.value) <= adapters.max_message_bytes and b'"event_id"' in m.value
            and b'"cost_usd"' in m.value for m in messages]
    values = [m.value for m, ok in zip(messages, fast, strict=True) if ok]
    try:
        events = _EVENTS.validate_json(b"[" + b",".join(values) + b"]")  # type: ignore[arg-type]
    except ValueError:
        events = []
    if len(events) != len(values):
        fast = [False] * len(messages)
    validated = iter(events)
    to_json = GatewayEvent.__pydantic_serializer__.to_json
    for msg, ok in zip(messages, fast, strict=True):
        event = next(validated) if ok else None
        if event is not None and "/" not in event.model and oldest <= event.event_time.timestamp() <= latest:
            out.records.append(event)
            out.record_json.append(to_json(event))
        else:
            parse_message_into(out, msg, adapters, window, now, "parse")
    return out


def parse_stage_rates(n: int, fetch: int, repeat: int) -> list[dict[str, float]]:
    """Per-event CPU microseconds of the parse stage's three ways, one dict per repeat (interleaved)."""
    adapters = AdaptersConfig()
    messages = [RawMessage(v, "raw", 0, i) for i, v in enumerate(canonical_messages(n))]
    now = 1_772_366_400.0 + 3600  # the messages' hour: all inside the event-time window
    ways: dict[str, Callable[[list[RawMessage]], ParsedBatch]] = {
        "per message (before)": lambda b: parse_batch(b, adapters, now=now, fast_path=False),
        "batch loop (now)": lambda b: parse_batch(b, adapters, now=now),
        "joined TypeAdapter": lambda b: joined_batch(b, adapters, now),
    }
    reference = ways["per message (before)"](messages[:fetch])
    for way in ways.values():
        got = way(messages[:fetch])
        assert got.records == reference.records and got.record_json == reference.record_json
    runs = []
    names = list(ways)
    for _ in range(repeat):
        spent = dict.fromkeys(names, 0.0)
        for k, i in enumerate(range(0, n, fetch)):  # the ways alternate fetch by fetch, so load drifts hit each alike
            batch = messages[i:i + fetch]
            for name in names[k % len(names):] + names[:k % len(names)]:
                start = time.process_time()
                ways[name](batch)
                spent[name] += time.process_time() - start
        runs.append({name: seconds / n * 1e6 for name, seconds in spent.items()})
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="events per format")
    parser.add_argument("--fetch", type=int, default=500, help="messages per fetch handed to parse_batch")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repeats of the parse-stage comparison")
    args = parser.parse_args()
    n = args.n
    rows = []
    canon = canonical_messages(n)
    rows.append(("canonical (parse_event fast path)", rate(parse_event, canon), rate(orjson.loads, canon),
                 sum(map(len, canon)) / n))
    rows.append(("canonical (parse_message)", rate(parse_message, canon), rate(orjson.loads, canon),
                 sum(map(len, canon)) / n))
    nocost = canonical_messages(n, with_cost=False)
    rows.append(("canonical, cost computed", rate(parse_message, nocost), rate(orjson.loads, nocost),
                 sum(map(len, nocost)) / n))
    lite = litellm_messages(max(1, n // 4))
    rows.append(("litellm StandardLoggingPayload", rate(parse_message, lite), rate(orjson.loads, lite),
                 sum(map(len, lite)) / len(lite)))
    otlp = otlp_messages(n)
    rows.append(("otel OTLP/JSON (100 spans/export)", rate(parse_message, otlp, 100), rate(orjson.loads, otlp, 100),
                 sum(map(len, otlp)) / n))
    assert parse_message(canon[0])[0] == parse_event(canon[0])
    assert dumps(parse_event(canon[0]))
    print(f"{'format':36} {'events/s':>10} {'orjson.loads ev/s':>18} {'ratio':>7} {'bytes/event':>12}")
    for name, parsed, reference, size in rows:
        print(f"{name:36} {parsed:>10,.0f} {reference:>18,.0f} {parsed / reference:>7.2%} {size:>12,.0f}")
    print(f"\nparse stage (parse_batch, {args.fetch} canonical messages a fetch): CPU us/event, speed-up over before")
    for i, run in enumerate(parse_stage_rates(n, args.fetch, args.repeat), 1):
        before = run["per message (before)"]
        print(f"  run {i}: " + "   ".join(f"{name} {us:.2f} ({before / us:.2f}x)" for name, us in run.items()))


if __name__ == "__main__":
    main()
