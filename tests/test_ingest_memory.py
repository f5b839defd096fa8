"""Ingest memory is bounded whatever the concurrency (issue 16, item 5): every body byte held, as read,
as inflated and as parsed (estimated), is charged to one in-flight budget; over it, 503 and Retry-After.

The RSS figures under eight concurrent 60 MB gzip bombs are measured by
``python -m spendwatch.benchmarks.ingest_bombs`` (docs/operations.md), not here.
"""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime

import orjson
import pytest

from spendwatch.streams.ingest.bodies import parse_cost_estimate

from ingest_offline import RecordingProducer, offline_ingest, offline_settings

GZIP_JSON = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def batch(n: int, prompt_bytes: int) -> bytes:
    """``n`` LiteLLM payloads, each with a prompt of ``prompt_bytes``."""
    start = datetime.now(UTC).timestamp() - 60
    return orjson.dumps([{
        "id": f"chatcmpl-{i}", "litellm_call_id": f"call-{i}", "call_type": "acompletion", "status": "success",
        "custom_llm_provider": "openai", "startTime": start, "endTime": start + 1, "model": "gpt-4o",
        "response_cost": 0.001, "metadata": {"user_api_key_hash": "h", "usage_object": {"prompt_tokens": 10}},
        "messages": [{"role": "user", "content": "x" * prompt_bytes}]} for i in range(n)])


async def test_concurrent_bodies_past_the_budget_get_503_and_everything_is_released() -> None:
    body = gzip.compress(batch(100, 20_000))  # ~2 MB inflated, ~10 KB on the wire
    inflated = len(gzip.decompress(body))
    one_request = inflated + parse_cost_estimate(gzip.decompress(body))
    settings = offline_settings(max_body_bytes=65_536, max_decompressed_bytes=3 * 1_048_576,
                                max_inflight_body_bytes=one_request + inflated // 2)
    hold = asyncio.Event()
    async with offline_ingest(settings, producer=RecordingProducer(hold)) as ingest:
        budget = ingest.service.inflight
        first = asyncio.create_task(ingest.post_full(body, GZIP_JSON))
        await ingest.producer.wait_for_waiting(1)  # parsed, holding its records while Kafka acknowledges
        held = budget.used
        assert 0 < held <= budget.limit
        others = await asyncio.gather(*(ingest.post_full(body, GZIP_JSON) for _ in range(7)))
        assert [(status, answer["error"], headers["Retry-After"]) for status, answer, headers in others] == [
            (503, "ingest_busy", "5")] * 7
        assert budget.peak <= budget.limit
        hold.set()
        status, answer, _ = await first
        assert (status, answer["accepted"]) == (200, 100)
        assert budget.used == 0
        status, _, _ = await ingest.post_full(body, GZIP_JSON)  # room again
        assert status == 200


@pytest.mark.parametrize("body", [
    b"[" + b'{"a":1},' * 400_000 + b"{}]",  # 3.2 MB that would parse to ~80 MB of dicts
    b"\n".join([b'{"a":[' + b"0," * 100_000 + b"0]}"] * 16),
], ids=["dense-array", "dense-lines"])
async def test_a_body_whose_parse_alone_would_pass_the_budget_is_413_before_it_is_parsed(body: bytes) -> None:
    settings = offline_settings(max_body_bytes=1_048_576, max_decompressed_bytes=4 * 1_048_576,
                                max_inflight_body_bytes=16 * 1_048_576)
    async with offline_ingest(settings) as ingest:
        status, answer, _ = await ingest.post_full(gzip.compress(body), GZIP_JSON)
        assert (status, answer["error"]) == (413, "body_too_large")
        assert ingest.service.inflight.peak <= ingest.service.inflight.limit
        assert ingest.service.inflight.used == 0


async def test_a_gzip_bomb_is_stopped_while_it_inflates() -> None:
    settings = offline_settings(max_body_bytes=1_048_576, max_decompressed_bytes=64 * 1_048_576,
                                max_inflight_body_bytes=65 * 1_048_576 + 4 * 1_048_576)
    async with offline_ingest(settings) as ingest:
        budget = ingest.service.inflight
        first = budget.lease()
        first.charge(60 * 1_048_576)  # another request holds most of the budget
        status, answer, _ = await ingest.post_full(gzip.compress(bytes(60_000_000)), GZIP_JSON)
        assert (status, answer["error"]) == (503, "ingest_busy")
        assert budget.peak <= budget.limit
        first.release(first.held)
        assert budget.used == 0
