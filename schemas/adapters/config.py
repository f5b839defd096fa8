"""Adapter settings: which attributes carry key, user and team in each gateway's format."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AdaptersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
