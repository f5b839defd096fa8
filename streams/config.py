"""Kafka and stream-processing settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class KafkaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port]. Unset: spendwatch starts its embedded broker under data_dir.",
    )


class StreamsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(default=8, ge=1, description="Partitions of the source topics spendwatch creates.")
