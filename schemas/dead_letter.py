"""Dead letters: a message that could not be parsed or delivered, with why and where from."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str = Field(description="Human-readable: which field, what was wrong.")
    error_type: str = Field(description="Machine-readable class of error, e.g. invalid_json, validation, unknown_format.")
    field: str | None = None
    stage: str = Field(default="parse", description="parse, detect, pagerduty, slack, clickhouse ...")
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    original_b64: str = Field(description="The original bytes, base64-encoded (prompt text never included by design of the adapters).")

    @classmethod
    def for_bytes(cls, raw: bytes, **kwargs) -> DeadLetter:
        return cls(original_b64=base64.b64encode(raw).decode("ascii"), **kwargs)

    @property
    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)
