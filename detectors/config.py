"""Detector thresholds: every knob a user tunes in YAML."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DetectorsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
