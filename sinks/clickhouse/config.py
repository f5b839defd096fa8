"""ClickHouse sink settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClickHouseConfig(BaseModel):
    """Where spendwatch's ClickHouse lives and how the sink writes to it.

    Unset ``url`` means embedded chDB under ``<data_dir>/chdb``: real ClickHouse in-process,
    which only one process may open at a time.
    """

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        description="http(s)://host:port of a ClickHouse server. Unset: embedded chDB under data_dir/chdb.",
    )
    database: str = Field(default="spendwatch", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Database holding spendwatch's tables.")
    username: str = Field(default="default", description="Server user (ignored by chDB).")
    password_env: str = Field(
        default="CLICKHOUSE_PASSWORD",
        description="NAME of the environment variable holding the server password (never the password itself).",
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, description="Server connect timeout, seconds.")
    send_receive_timeout_s: float = Field(default=300.0, gt=0, description="Server query/insert timeout, seconds.")

    consumer_group: str = Field(
        default="spendwatch-clickhouse",
        description="Kafka consumer group of the sink (its own: the sink never slows the detectors' group).",
    )
    partition_assignment: Literal["auto", "group", "all"] = Field(
        default="auto",
        description="'group': partitions balanced across sink processes by the consumer group. 'all': this sink "
        "reads every partition (offsets still committed under consumer_group). 'auto': 'all' on embedded chDB "
        "(only one process can open it), 'group' with a server url.",
    )
    topic_wait_s: float = Field(default=60.0, gt=0, description="With 'all': how long to wait at start for the topics to exist.")
    migrate_on_start: bool = Field(default=True, description="Apply pending schema migrations when the sink starts.")
    flush_interval_s: float = Field(default=1.0, gt=0, description="Longest time a row waits in the buffer before it is written.")
    batch_max_rows: int = Field(default=50_000, ge=1, description="A flush starts early once this many rows are buffered.")
    buffer_max_rows: int = Field(
        default=200_000, ge=1,
        description="Backpressure: above this many buffered rows the sink pauses its Kafka partitions "
        "until ClickHouse catches up (Kafka keeps the rest; memory stays bounded).",
    )
    retry_initial_backoff_s: float = Field(default=0.5, gt=0, description="First wait after a failed insert, seconds.")
    retry_max_backoff_s: float = Field(default=30.0, gt=0, description="Longest wait between insert retries, seconds (retries never give up).")

    shutdown_timeout_s: float = Field(
        default=30.0, gt=0,
        description="On stop, how long to keep retrying the last inserts; after that the unwritten rows stay "
        "uncommitted in Kafka and are written after the next start.",
    )
    raw_retention_days: int = Field(
        default=400, ge=1,
        description="TTL of the raw tables (events, outcomes, alert_events). Applied by `spendwatch db migrate`.",
    )
    rollup_retention_days: int = Field(
        default=1100, ge=1,
        description="TTL of the hourly and daily rollups and session totals. Applied by `spendwatch db migrate`.",
    )
