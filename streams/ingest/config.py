"""HTTP ingest service settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=1, le=65535)
