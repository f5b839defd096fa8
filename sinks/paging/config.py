"""Routing of alerts to owners (PagerDuty, Slack, console), Alertmanager-style."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PagingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
