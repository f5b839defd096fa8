"""Kafka and stream-processing settings, including every topic name in one place."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TopicsConfig(BaseModel):
    """Topic names. ``raw`` is where gateways and the ingest service write; the rest are spendwatch's own."""

    model_config = ConfigDict(extra="forbid")

    raw: str = Field(default="spendwatch-raw", description="Gateway messages in any supported format, keyed by anything.")
    events: str = Field(default="spendwatch-events", description="Canonical GatewayEvent JSON, keyed by the key scope.")
    outcomes: str = Field(default="spendwatch-outcomes", description="Canonical OutcomeEvent JSON, keyed by the key scope.")
    alerts: str = Field(default="spendwatch-alerts", description="Alert JSON, keyed by dedup_key: the pagers' durable outbox.")
    dead_letters: str = Field(default="spendwatch-dead-letters", description="DeadLetter JSON: what failed, why, and the original bytes.")
    pager_log: str = Field(default="spendwatch-pager-log", description="Compacted: the pager's delivery log (what each receiver was told, open Slack messages, in-flight pages).")


class KafkaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port]. Unset: spendwatch starts its embedded broker under data_dir.",
    )
    topics: TopicsConfig = Field(default_factory=TopicsConfig)


class StreamsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(default=8, ge=1, description="Partitions of the source topics spendwatch creates.")
