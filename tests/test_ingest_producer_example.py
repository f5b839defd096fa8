"""deploy/examples/producer.py, the direct-Kafka path for a custom gateway: run as users run it,
its messages must be what the stream workers parse, keyed by the key, valid against the JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
from ingest_support import read_topic

from spendwatch.broker import create_topics
from spendwatch.schemas.adapters import parse_message
from spendwatch.schemas.event import GatewayEvent

pytestmark = pytest.mark.kafka


async def test_example_producer_writes_parseable_keyed_events(kafka_bootstrap, unique_prefix, repo_root):
    topic = f"{unique_prefix}-raw"
    await create_topics(kafka_bootstrap, {topic: 3})
    script = repo_root / "deploy" / "examples" / "producer.py"
    schema = repo_root / "schemas" / "gateway_event.schema.json"
    args = [sys.executable, str(script), "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--events", "9",
            "--check-schema"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "9 events acknowledged" in done.stdout

    messages = await read_topic(kafka_bootstrap, topic)
    assert len(messages) == 9
    for message in messages:
        (event,) = parse_message(message.value)
        assert isinstance(event, GatewayEvent)
        assert message.key == event.scope_value("key").encode()
        assert event.input_tokens >= event.cache_read_tokens and str(event.cost_usd) == "0.00528"
        jsonschema.validate(json.loads(message.value), json.loads(schema.read_text()))
    assert len({m.key for m in messages}) == 3 and len({m.partition for m in messages}) >= 2
