"""The published JSON Schemas are current and describe what the models accept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import jsonschema
import orjson
import pytest

from spendwatch.schemas.adapters import dumps
from spendwatch.schemas.alert import Action, Alert, Severity
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.jsonschema import PUBLISHED, SCHEMA_DIR, render


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_committed_schema_is_current(name):
    path = SCHEMA_DIR / name
    assert path.exists(), f"{name} missing: run python -m spendwatch.schemas.jsonschema"
    assert path.read_text() == render(name, PUBLISHED[name]), f"{name} stale: run python -m spendwatch.schemas.jsonschema"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_events_and_alerts_validate_against_their_schemas():
    event = GatewayEvent(
        event_id="e1", event_time=datetime(2026, 1, 1, tzinfo=UTC), gateway="litellm", api_key_hash="k", model="m",
        input_tokens=10, cache_read_tokens=4, output_tokens=3, cost_usd=Decimal("0.0001"),
    )
    validator("gateway_event.schema.json").validate(orjson.loads(dumps(event)))
    alert = Alert(
        action=Action.trigger, detector="spend_spike", scope="key", subject="k", fired_at=datetime(2026, 1, 1),
        severity=Severity.error, summary="key k spent $300 in 1h, 3.1x its baseline", observed=300.0,
        dedup_key="spend_spike:key:k",
    )
    validator("alert.schema.json").validate(json.loads(alert.model_dump_json()))


@pytest.mark.parametrize("change", [{"input_tokens": -1}, {"cost_usd": -1}, {"messages": []}, {"model": ""}])
def test_schema_rejects_what_the_model_rejects(change):
    good = {"event_id": "e1", "event_time": "2026-01-01T00:00:00Z", "gateway": "g", "user": "u", "model": "m"}
    schema = validator("gateway_event.schema.json")
    schema.validate(good)
    assert not schema.is_valid({**good, **change})


def test_event_schema_doc_lists_every_field():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "event-schema.md").read_text()
    missing = [name for name in GatewayEvent.model_fields if f"| `{name}` |" not in doc]
    assert not missing, f"docs/event-schema.md does not document {missing}"
