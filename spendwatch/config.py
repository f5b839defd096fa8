"""The one YAML configuration file: loading, ``${ENV_VAR}`` interpolation, validation.

Each area owns its section model next to its code; this module only assembles them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.adapters.config import AdaptersConfig
from spendwatch.sinks.clickhouse.config import ClickHouseConfig
from spendwatch.sinks.paging.config import PagingConfig
from spendwatch.streams.config import KafkaConfig, StreamsConfig
from spendwatch.streams.ingest.config import IngestConfig


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(
        default=Path(os.environ.get("SPENDWATCH_HOME", ".spendwatch")),
        description="Where embedded Kafka, chDB and worker state live.",
    )
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    streams: StreamsConfig = Field(default_factory=StreamsConfig)
    clickhouse: ClickHouseConfig = Field(default_factory=ClickHouseConfig)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)
    paging: PagingConfig = Field(default_factory=PagingConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    adapters: AdaptersConfig = Field(default_factory=AdaptersConfig)


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the file, the path and the fix."""


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, source: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{source}: environment variable {name} is not set (referenced as ${{{name}}})")

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, source) for v in value]
    return value


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate a config file; no file means all defaults."""
    if path is None:
        return Settings()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (kafka:, detectors:, ...)")
    try:
        return Settings.model_validate(_interpolate(raw, str(path)))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
