"""A custom gateway writing spendwatch events straight to Kafka (no HTTP hop).

Copy this into your gateway. After each LLM call, build one *canonical event* and produce it
to spendwatch's ``raw`` topic (default ``spendwatch-raw``), keyed by the API key hash, so every
event of one key lands on one partition, in order.

The message format
------------------
One JSON object per message, UTF-8; its JSON Schema is ``schemas/gateway_event.schema.json``.
Required: ``event_id`` (unique per request: retries with the same id are counted once),
``event_time`` (RFC 3339, UTC), ``gateway``, ``model``, and at least one of ``api_key_hash``
and ``user`` (spend must have an owner). Tokens follow the OpenTelemetry GenAI convention:
``input_tokens`` *includes* ``cache_read_tokens`` and ``cache_write_tokens``;
``output_tokens`` *includes* ``reasoning_tokens``. ``cost_usd`` is a decimal *string* (exact
money, never a float); leave it out and spendwatch prices the call from its tokens. Never put
prompt or response text in the event: there is no field for it, and unknown fields are
rejected.

Durability: ``acks="all"`` and ``enable_idempotence=True`` so an acknowledged event is on
every in-sync replica and the producer's own retries never write it twice. Await the send
futures before you consider an event delivered (here: :meth:`SpendwatchProducer.flush`).

Run it against a local broker (``spendwatch broker``)::

    python deploy/examples/producer.py --bootstrap-servers 127.0.0.1:9092 --events 20
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "gateway_event.schema.json"


def key_hash(api_key: str) -> str:
    """Never send the key itself: a SHA-256 of it identifies the key just as well."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def gateway_event(*, api_key: str, user: str | None, team: str | None, session_id: str | None, model: str,
                  provider: str, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
                  cost_usd: Decimal | None = None, latency_ms: float | None = None, status: str = "success",
                  started: datetime | None = None, event_id: str | None = None) -> dict[str, Any]:
    """One canonical event for one LLM call, as a JSON-ready dict."""
    event: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "event_time": (started or datetime.now(UTC)).isoformat(),
        "gateway": "my-gateway",
        "api_key_hash": key_hash(api_key),
        "model": model,
        "provider": provider,
        "status": status,
        "input_tokens": input_tokens,
        "cache_read_tokens": cache_read_tokens,
        "output_tokens": output_tokens,
    }
    optional = {"user": user, "team": team, "session_id": session_id, "latency_ms": latency_ms,
                "cost_usd": None if cost_usd is None else str(cost_usd)}
    event.update({k: v for k, v in optional.items() if v is not None})
    return event


class SpendwatchProducer:
    """A thin, durable producer of canonical events."""

    def __init__(self, bootstrap_servers: str, topic: str = "spendwatch-raw", **kafka: Any) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True,
                                          linger_ms=10, **kafka)
        self._pending: list[asyncio.Future] = []

    async def start(self) -> None:
        await self._producer.start()

    async def send(self, event: dict[str, Any]) -> None:
        """Queue one event (returns at once); :meth:`flush` waits for Kafka's acknowledgement."""
        key = (event.get("api_key_hash") or f"user:{event['user']}").encode()
        value = json.dumps(event, separators=(",", ":")).encode()
        self._pending.append(await self._producer.send(self.topic, value, key=key))

    async def flush(self) -> None:
        """Wait until every queued event is acknowledged by all in-sync replicas (raises if one failed)."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    async def stop(self) -> None:
        await self.flush()
        await self._producer.stop()


def validate(events: list[dict[str, Any]]) -> None:
    """Check events against the published JSON Schema (needs ``pip install jsonschema``)."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for event in events:
        validator.validate(event)


def demo_events(n: int) -> list[dict[str, Any]]:
    """Calls from three keys of two teams, one agent session each."""
    callers = [("sk-live-alpha", "ann", "search"), ("sk-live-beta", "bob", "billing"), ("sk-live-gamma", "cyd", "search")]
    events = []
    for i in range(n):
        api_key, user, team = callers[i % len(callers)]
        events.append(gateway_event(
            api_key=api_key, user=user, team=team, session_id=f"{user}-run-1", model="gpt-4o", provider="openai",
            input_tokens=1200 + i, cache_read_tokens=512, output_tokens=300, cost_usd=Decimal("0.00528"),
            latency_ms=850.0,
        ))
    return events


async def main(bootstrap_servers: str, topic: str, n: int, check_schema: bool) -> None:
    events = demo_events(n)
    if check_schema:
        validate(events)
    producer = SpendwatchProducer(bootstrap_servers, topic)
    await producer.start()
    try:
        for event in events:
            await producer.send(event)
    finally:
        await producer.stop()
    print(f"{len(events)} events acknowledged on {topic}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="spendwatch-raw")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--check-schema", action="store_true", help="validate against the JSON Schema first")
    args = parser.parse_args()
    asyncio.run(main(args.bootstrap_servers, args.topic, args.events, args.check_schema))
