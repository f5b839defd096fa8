"""Outcome events: a unit of useful output (a task accepted, a PR merged) attributed to
a key, user or session, so spend can be joined to what it produced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .event import Identifier


class OutcomeEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    outcome_id: Identifier
    event_time: datetime
    kind: Identifier = Field(description="task_accepted, pr_merged, ticket_resolved, or your own kind.")
    value: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)] = 1.0
    api_key_hash: Identifier | None = None
    user: Identifier | None = None
    team: Identifier | None = None
    session_id: Identifier | None = None
    source: Identifier | None = Field(default=None, description="Which system reported it: github, jira, ...")
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=64)

    @field_validator("event_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _attributable(self) -> OutcomeEvent:
        if self.api_key_hash is None and self.user is None:
            raise ValueError("api_key_hash and user are both missing: an outcome must be attributable")
        return self

    def scope_value(self, scope: str) -> Any:
        if scope == "key":
            return self.api_key_hash or (f"user:{self.user}" if self.user else None)
        if scope == "session":
            return self.session_id
        return getattr(self, scope, None)
