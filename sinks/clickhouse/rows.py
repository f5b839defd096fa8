"""Kafka records -> ClickHouse rows, one pure function per source topic.

Each row carries the record's (topic, partition, offset): that is how the sink knows,
after a crash, exactly which records ClickHouse already holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from spendwatch.schemas.alert import Alert
from spendwatch.schemas.event import CostSource, GatewayEvent
from spendwatch.schemas.outcome import OutcomeEvent
from spendwatch.schemas.pricing import price_tier

EVENT_COLUMNS = (
    "event_id", "event_time", "gateway", "key_scope", "api_key_hash", "api_key_alias", "user", "team", "org",
    "project", "tags", "session_id", "model", "provider", "model_tier", "status", "error_type",
    "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
    "cost_usd", "cost_source", "cost_unknown_reason", "latency_ms", "kafka_topic", "kafka_partition", "kafka_offset",
)
OUTCOME_COLUMNS = (
    "outcome_id", "event_time", "kind", "value", "key_scope", "api_key_hash", "user", "team", "session_id",
    "source", "attributes", "kafka_topic", "kafka_partition", "kafka_offset",
)
ALERT_COLUMNS = (
    "dedup_key", "action", "detector", "scope", "subject", "severity", "fired_at", "episode_started_at",
    "summary", "observed", "expected", "unit", "labels", "root_cause", "details",
    "kafka_topic", "kafka_partition", "kafka_offset",
)


@dataclass(frozen=True)
class TableSpec:
    """A destination table: its name and the columns the sink writes, in row order."""

    name: str
    columns: tuple[str, ...]


EVENTS = TableSpec("events", EVENT_COLUMNS)
OUTCOMES = TableSpec("outcomes", OUTCOME_COLUMNS)
ALERTS = TableSpec("alert_events", ALERT_COLUMNS)


def event_row(event: GatewayEvent, topic: str, partition: int, offset: int) -> tuple[Any, ...]:
    """A :class:`GatewayEvent` as an ``events`` row (columns :data:`EVENT_COLUMNS`)."""
    return (
        event.event_id, event.event_time, event.gateway, event.scope_value("key") or "", event.api_key_hash or "",
        event.api_key_alias or "", event.user or "", event.team or "", event.org or "", event.project or "",
        list(event.tags), event.session_id or "", event.model, event.provider or "",
        price_tier(event.model, event.provider), event.status.value, event.error_type or "",
        event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens,
        event.reasoning_tokens,
        None if event.cost_source is CostSource.unknown else event.cost_usd,
        event.cost_source.value, event.cost_unknown_reason or "", event.latency_ms, topic, partition, offset,
    )


def outcome_row(outcome: OutcomeEvent, topic: str, partition: int, offset: int) -> tuple[Any, ...]:
    """An :class:`OutcomeEvent` as an ``outcomes`` row (columns :data:`OUTCOME_COLUMNS`)."""
    return (
        outcome.outcome_id, outcome.event_time, outcome.kind, outcome.value, outcome.scope_value("key") or "",
        outcome.api_key_hash or "", outcome.user or "", outcome.team or "", outcome.session_id or "",
        outcome.source or "", {k: str(v) for k, v in outcome.attributes.items()}, topic, partition, offset,
    )


def alert_row(alert: Alert, topic: str, partition: int, offset: int) -> tuple[Any, ...]:
    """An :class:`Alert` as an ``alert_events`` row (columns :data:`ALERT_COLUMNS`)."""
    return (
        alert.dedup_key, alert.action.value, alert.detector, alert.scope, alert.subject, alert.severity.value,
        alert.fired_at, alert.episode_started_at, alert.summary, alert.observed, alert.expected, alert.unit,
        dict(alert.labels),
        orjson.dumps([rc.model_dump(mode="json") for rc in alert.root_cause]).decode(),
        orjson.dumps(alert.details, default=str).decode(),
        topic, partition, offset,
    )


def parse_event(value: bytes) -> GatewayEvent:
    return GatewayEvent.model_validate_json(value)


def parse_outcome(value: bytes) -> OutcomeEvent:
    return OutcomeEvent.model_validate_json(value)


def parse_alert(value: bytes) -> Alert:
    return Alert.model_validate_json(value)
