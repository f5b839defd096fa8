"""Malformed bodies get a 4xx, a dead letter each and a count in the request metrics (issue 16, item 6)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spendwatch.metrics import REGISTRY

from ingest_offline import offline_ingest

JSON = {"Content-Type": "application/json"}


def requests_counted(status: int) -> float:
    return REGISTRY.get_sample_value("spendwatch_ingest_requests_total",
                                     {"endpoint": "/v1/events", "status": str(status)}) or 0.0


@pytest.mark.parametrize("depth", [256, 512, 1024, 1025, 100_000])
async def test_deeply_nested_arrays_are_a_400_and_a_dead_letter(depth: int) -> None:
    async with offline_ingest() as ingest:
        before = requests_counted(400)
        status, body = await ingest.post(b"[" * depth + b"]" * depth, JSON)
        assert status == 400, body
        assert body["rejected"] == body["records"] == 1
        [letter] = ingest.dead_letters()
        assert letter.error_type in ("validation", "invalid_json")
        assert requests_counted(400) == before + 1


async def test_a_deep_element_beside_good_events_keeps_them() -> None:
    good = (b'{"event_id":"e1","event_time":"%s","gateway":"g","user":"ann","model":"gpt-4o","cost_usd":"1"}'
            % datetime.now(UTC).isoformat().encode())
    async with offline_ingest() as ingest:
        status, body = await ingest.post(b"[" + good + b"," + b"[" * 600 + b"]" * 600 + b"]", JSON)
        assert (status, body["accepted"], body["rejected"]) == (200, 1, 1)
        assert [e["event_id"] for e in ingest.events()] == ["e1"]
        assert len(ingest.dead_letters()) == 1


async def test_an_unexpected_error_is_answered_and_counted(monkeypatch) -> None:
    from spendwatch.streams.ingest import server

    def broken(*args, **kwargs):
        raise RuntimeError("an adapter bug")

    monkeypatch.setattr(server, "split_records", broken)
    async with offline_ingest() as ingest:
        before = requests_counted(500)
        status, body = await ingest.post(b"{}", JSON)
        assert (status, body["error"]) == (500, "internal_error")
        assert requests_counted(500) == before + 1
