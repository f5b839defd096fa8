"""Helpers for the ClickHouse sink tests: settings on unique topics, events with exact costs, producing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaProducer

from spendwatch.broker import create_topics
from spendwatch.config import Settings
from spendwatch.schemas.alert import Alert
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.outcome import OutcomeEvent
from spendwatch.sinks.clickhouse.config import ClickHouseConfig
from spendwatch.streams.config import KafkaConfig, TopicsConfig

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TEAMS = ("search", "support", "research")
MODELS = (("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-opus-4-1", "anthropic"))


def sink_settings(tmp_path: Path, bootstrap: str, prefix: str, **clickhouse) -> Settings:
    topics = TopicsConfig(events=f"{prefix}-events", outcomes=f"{prefix}-outcomes", alerts=f"{prefix}-alerts",
                          dead_letters=f"{prefix}-dead")
    defaults = dict(consumer_group=f"{prefix}-clickhouse", flush_interval_s=0.1, retry_initial_backoff_s=0.05,
                    retry_max_backoff_s=0.2)
    return Settings(data_dir=tmp_path, kafka=KafkaConfig(bootstrap_servers=bootstrap, topics=topics),
                    clickhouse=ClickHouseConfig(**{**defaults, **clickhouse}))


async def make_sink_topics(settings: Settings, event_partitions: int = 4) -> None:
    t = settings.kafka.topics
    await create_topics(settings.kafka.bootstrap_servers,
                        {t.events: event_partitions, t.outcomes: 2, t.alerts: 2, t.dead_letters: 1})


def tiny_cost(rng: random.Random) -> Decimal:
    """A cost with all 12 decimal places significant (fractions of a micro-dollar)."""
    return Decimal(rng.randrange(1, 10**9)) / Decimal(10**12)


def make_events(n: int, seed: int = 7, start: int = 0, big_every: int = 50) -> list[GatewayEvent]:
    """``n`` events over a few hours, keys, teams, models and sessions; costs exact to 1e-12 USD.

    Every ``big_every``-th event costs over $1000 with 12 significant decimals, so a float sum
    of the costs would be visibly wrong.
    """
    rng = random.Random(seed + start)
    events = []
    for i in range(start, start + n):
        model, provider = MODELS[i % len(MODELS)]
        cost = Decimal("1234.567890123457") if big_every and i % big_every == 0 else tiny_cost(rng)
        events.append(GatewayEvent(
            event_id=f"ev-{i}", event_time=T0 + timedelta(seconds=7 * i), gateway="litellm",
            api_key_hash=f"key-{i % 5}", user=f"user-{i % 7}", team=TEAMS[i % 3] if i % 11 else None,
            project="proj-a", tags=("agent",) if i % 2 else (), session_id=f"sess-{i % 13}",
            model=model, provider=provider, status="failure" if i % 17 == 0 else "success",
            input_tokens=1000, cache_read_tokens=400 if i % 5 == 0 else 0, output_tokens=200,
            cost_usd=cost, cost_source="gateway",
        ))
    return events


def make_alerts(dedup_key: str = "spend_spike:key:key-1:1") -> list[Alert]:
    common = dict(detector="spend_spike", scope="key", subject="key-1", severity="error",
                  summary="key-1 spent $120 in 1h, 3.2x its baseline", observed=120.0, expected=37.5,
                  dedup_key=dedup_key, episode_started_at=T0)
    return [
        Alert(action="trigger", fired_at=T0, **common),
        Alert(action="repeat", fired_at=T0 + timedelta(minutes=30), **common),
        Alert(action="resolve", fired_at=T0 + timedelta(minutes=95), **common),
        Alert(action="trigger", fired_at=T0 + timedelta(hours=2), detector="session_burn", scope="session",
              subject="sess-3", severity="warning", summary="sess-3 burning $40/h", observed=40.0,
              dedup_key="session_burn:session:sess-3:1"),
    ]


def make_outcomes(n: int = 6) -> list[OutcomeEvent]:
    return [OutcomeEvent(outcome_id=f"out-{i}", event_time=T0 + timedelta(minutes=i), kind="task_accepted",
                         api_key_hash=f"key-{i % 2}", team="search") for i in range(n)]


async def produce(bootstrap: str, topic: str, payloads: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in payloads]
        for f in futures:
            await f
    finally:
        await producer.stop()


def keyed(models) -> list[tuple[bytes | None, bytes]]:
    """(key, JSON) pairs, keyed by the key scope like the stream workers do."""
    out = []
    for m in models:
        key = m.scope_value("key") if hasattr(m, "scope_value") and not isinstance(m, Alert) else m.dedup_key
        out.append((key.encode() if key else None, m.model_dump_json().encode()))
    return out
