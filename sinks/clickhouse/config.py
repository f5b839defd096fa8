"""ClickHouse sink settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ClickHouseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        description="http(s)://host:port of a ClickHouse server. Unset: embedded chDB under data_dir/chdb.",
    )
    database: str = "spendwatch"
