"""Cost semantics (issue 16, item 8): LiteLLM's 0 for a priceable model is priced, an unpriced request is
null with a reason down to ClickHouse, and per-event costs are rounded half-even to 12 decimals."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from spendwatch.schemas.adapters import parse_message
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.pricing import compute_cost
from spendwatch.sinks.clickhouse import rows as R
from spendwatch.sinks.clickhouse.client import get_client
from spendwatch.sinks.clickhouse.config import ClickHouseConfig
from spendwatch.sinks.clickhouse.migrate import SCHEMA_MIGRATIONS_DDL, available_migrations, migrate


def litellm(model: str, response_cost: float | None, **overrides: object) -> dict:
    start = time.time() - 60
    payload = {
        "id": "chatcmpl-1", "litellm_call_id": "call-1", "call_type": "acompletion", "status": "success",
        "custom_llm_provider": "openai", "startTime": start, "endTime": start + 1, "model": model,
        "response_cost": response_cost,
        "metadata": {"user_api_key_hash": "h", "usage_object": {"prompt_tokens": 1000, "completion_tokens": 200}},
    }
    payload.update(overrides)
    return payload


def test_litellm_zero_for_a_priceable_model_is_priced_from_the_tokens() -> None:
    [event] = parse_message(litellm("gpt-4o", 0.0))
    expected, _ = compute_cost("gpt-4o", "openai", input_tokens=1000, output_tokens=200, at=event.event_time)
    assert (event.cost_usd, event.cost_source.value) == (expected, "computed")
    assert expected > 0


def test_litellm_zero_for_an_unknown_model_is_null_with_a_reason() -> None:
    [event] = parse_message(litellm("my-private-finetune", 0.0))
    assert (event.cost_usd, event.cost_source.value) == (None, "unknown")
    assert "response_cost 0 for 1200 tokens" in event.cost_unknown_reason
    assert "no price known for model 'my-private-finetune'" in event.cost_unknown_reason


@pytest.mark.parametrize("overrides", [{"cache_hit": True}, {"status": "failure"}])
def test_a_real_zero_stays_the_gateway_zero(overrides: dict) -> None:
    [event] = parse_message(litellm("gpt-4o", 0.0, **overrides))
    assert (event.cost_usd, event.cost_source.value) == (Decimal(0), "gateway")


@pytest.mark.parametrize(("cost", "stored"), [
    ("0.0000135", "0.0000135"),                       # 12 decimals or fewer: as sent
    ("1.2345678901239", "1.234567890124"),            # the 13th decimal rounds up, not truncated
    ("0.0000000000025", "0.000000000002"),            # a half rounds to even...
    ("0.0000000000035", "0.000000000004"),            # ...both ways
    ("2.00000000000049999", "2.000000000000"),
])
def test_costs_round_half_even_to_12_decimals(cost: str, stored: str) -> None:
    event = GatewayEvent(event_id="e", event_time="2026-12-01T00:00:00Z", gateway="g", user="u", model="m",
                         cost_usd=cost)
    assert event.cost_usd == Decimal(stored)
    assert GatewayEvent.model_validate_json(event.model_dump_json()).cost_usd == Decimal(stored)


def _event(i: int, cost: str | None) -> GatewayEvent:
    unknown = cost is None
    return GatewayEvent(event_id=f"e{i}", event_time="2026-12-01T10:00:00Z", gateway="g", api_key_hash="k",
                        team="t1", session_id="s1", model="private" if unknown else "gpt-4o", cost_usd=cost,
                        cost_source="unknown" if unknown else "gateway",
                        cost_unknown_reason="no price known for model 'private'" if unknown else None)


def test_clickhouse_stores_unpriced_costs_as_null_with_the_reason_and_sums_stay_exact(tmp_path) -> None:
    client = get_client(ClickHouseConfig(), tmp_path)
    try:
        # a database created before this change: its unpriced rows were written as 0
        client.command(SCHEMA_MIGRATIONS_DDL)
        for migration in available_migrations():
            if "cost_unknown_reason" in migration.sql:
                break
            for statement in migration.statements():
                client.command(statement)
            client.insert("schema_migrations", [(migration.version, migration.name, migration.checksum)],
                          column_names=["version", "name", "checksum"])
        old_columns = [c for c in R.EVENT_COLUMNS if c != "cost_unknown_reason"]
        old_row = [0 if c == "cost_usd" else v for c, v in zip(R.EVENT_COLUMNS, R.event_row(_event(0, None), "events", 0, 0))
                   if c != "cost_unknown_reason"]
        client.insert("events", [old_row], column_names=old_columns)
        migrate(client)

        events = [_event(1, "0.000000000001"), _event(2, None), _event(3, "1234.567890123457"), _event(4, None)]
        client.insert("events", [R.event_row(e, "events", 0, i + 1) for i, e in enumerate(events)],
                      column_names=list(R.EVENT_COLUMNS))
        rows = client.query("SELECT event_id, cost_usd, cost_source, cost_unknown_reason FROM events "
                            "ORDER BY event_id").result_rows
        assert [(r[0], r[1]) for r in rows] == [("e0", None), ("e1", Decimal("0.000000000001")), ("e2", None),
                                                ("e3", Decimal("1234.567890123457")), ("e4", None)]
        assert rows[2][3] == "no price known for model 'private'"
        exact = Decimal("1234.567890123458")
        [(raw, unpriced)] = client.query("SELECT sum(cost_usd), countIf(cost_source = 'unknown') FROM events").result_rows
        [(hourly, hourly_unpriced)] = client.query(
            "SELECT sum(cost_usd), sum(unpriced_requests) FROM spend_hourly WHERE dimension = 'team'").result_rows
        [(daily,)] = client.query("SELECT sum(cost_usd) FROM spend_daily WHERE dimension = 'all'").result_rows
        [(session,)] = client.query("SELECT sum(cost_usd) FROM session_totals").result_rows
        assert raw == hourly == daily == session == exact
        assert unpriced == hourly_unpriced == 3
    finally:
        client.close()
