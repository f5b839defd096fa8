"""HTTP ingest service settings: where it listens, who may send, how much, and how it writes to Kafka.

Tokens never live in the YAML file. The file names *environment variables*; the
tokens are read from them when the service starts:

``SPENDWATCH_INGEST_TOKENS`` (the name is :attr:`IngestConfig.tokens_env`)
    Comma-separated ``gateway=token`` pairs, e.g.
    ``litellm-prod=9f0c...,openrouter=41ab...``.
:attr:`IngestConfig.token_env_vars`
    ``{gateway name: name of the env var holding its token}``, for deployments whose
    secret store mounts one variable per secret.

Each token maps to the gateway name its requests are attributed to (metrics, dead
letters, and ``GatewayEvent.gateway`` when :attr:`IngestConfig.stamp_gateway` is on).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: What an environment variable name looks like; anything else in ``token_env_vars`` is refused
#: because it is most likely a token pasted into the YAML file by mistake.
ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class IngestProducerConfig(BaseModel):
    """How the ingest service writes to Kafka. Durability settings (``acks=all``, idempotence) are fixed, not options."""

    model_config = ConfigDict(extra="forbid")

    linger_ms: int = Field(
        default=5, ge=0, le=1000,
        description="How long the producer waits to fill a batch, ms. Small: requests are answered sooner.",
    )
    max_batch_size: int = Field(default=1_048_576, ge=16_384, description="Largest producer batch per partition, bytes.")
    max_request_size: int = Field(default=1_048_576, ge=65_536, description="Largest produce request, bytes.")
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        default=None,
        description="Producer compression of the raw topic (unset: none). zstd costs about a microsecond per "
        "event and shrinks gateway JSON several times.",
    )
    request_timeout_ms: int = Field(default=30_000, ge=1000, description="Kafka produce request timeout, ms.")
    send_timeout_s: float = Field(
        default=30.0, gt=0,
        description="Longest an HTTP request waits for Kafka to acknowledge its events; past it the request gets "
        "503 with Retry-After and the sender retries.",
    )
    transactional: bool = Field(
        default=True,
        description="Write each request atomically: concurrent requests share one Kafka transaction (group "
        "commit) and are answered once it commits, so a failed or interrupted request leaves nothing for "
        "read_committed consumers and its retry is counted once. Off: idempotent writes without transactions "
        "(for brokers without transaction support).",
    )
    transactional_id: str | None = Field(
        default=None,
        description="Kafka transactional id of this instance; must be stable across its restarts and unique "
        "among instances (e.g. the pod name of a StatefulSet). Unset: <transactional_id_prefix>-<host>-<port>.",
    )
    transactional_id_prefix: str = Field(default="spendwatch-ingest", description="Prefix of the default transactional id.")
    transaction_timeout_ms: int = Field(
        default=60_000, ge=1000,
        description="Broker aborts a transaction left open this long (an instance that died and never came back).",
    )
    connect_retry_s: float = Field(
        default=2.0, gt=0,
        description="Pause between attempts to connect to Kafka at start-up; /readyz is 503 until connected.",
    )


class IngestConfig(BaseModel):
    """The ``ingest:`` section: ``spendwatch ingest``, the HTTP service gateways send events and OTLP traces to."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Bind address. Use 0.0.0.0 to accept from other hosts.")
    port: int = Field(default=8787, ge=0, le=65535, description="Listen port; 0 picks a free one.")
    tokens_env: str = Field(
        default="SPENDWATCH_INGEST_TOKENS",
        description="Name of the environment variable holding comma-separated gateway=token pairs.",
    )
    token_env_vars: dict[str, str] = Field(
        default_factory=dict,
        description="Gateway name -> name of an environment variable holding that gateway's token. Never the token.",
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="Accept requests without a bearer token (local development only). Off: the service refuses "
        "to start with no token configured.",
    )
    stamp_gateway: bool = Field(
        default=True,
        description="Set GatewayEvent.gateway to the gateway name the request's token maps to, so two gateways of "
        "the same kind (litellm-eu, litellm-us) stay apart. Off: keep what the adapter derived (litellm, otel...).",
    )
    max_body_bytes: int = Field(
        default=16 * 1_048_576, ge=1024,
        description="Largest request body on the wire (compressed or not), bytes; bigger gets 413.",
    )
    max_decompressed_bytes: int = Field(
        default=64 * 1_048_576, ge=1024,
        description="Largest body after gzip decompression, bytes; bigger gets 413 (guards against gzip bombs).",
    )
    max_inflight_body_bytes: int = Field(
        default=256 * 1_048_576, ge=2048,
        description="Most bytes all requests being handled may hold at once: their bodies as read, as inflated, "
        "and an estimate of their parse (100 bytes per JSON value). A request that would go over gets 503 with "
        "Retry-After (413 if it alone would), so memory stays bounded under any concurrency (eight gzip bombs at "
        "once). At least max_body_bytes + max_decompressed_bytes.",
    )
    max_header_bytes: int = Field(
        default=16_384, ge=1024, le=1_048_576,
        description="Longest request line or header field, bytes (an Authorization header with a long JWT must fit); "
        "longer gets 400 and, whatever the header, its value is never logged.",
    )
    max_records_per_request: int = Field(
        default=10_000, ge=1,
        description="Most records (JSON objects, array elements, NDJSON lines, OTLP spans) one request may carry; "
        "more gets 413.",
    )
    dead_letter_max_original_bytes: int = Field(
        default=65_536, ge=256,
        description="Longest original kept in a dead letter (after prompt and response text is removed), bytes.",
    )
    producer: IngestProducerConfig = Field(default_factory=IngestProducerConfig)

    @field_validator("tokens_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not ENV_VAR_NAME.match(value):
            raise ValueError("tokens_env must be the NAME of an environment variable (A-Z, 0-9, _)")
        return value

    @field_validator("token_env_vars")
    @classmethod
    def _names_not_tokens(cls, value: dict[str, str]) -> dict[str, str]:
        for gateway, env_name in value.items():
            if not ENV_VAR_NAME.match(env_name):
                raise ValueError(
                    f"token_env_vars.{gateway} must be the NAME of an environment variable (A-Z, 0-9, _), "
                    "not a token: put the token in that variable"
                )
        return value

    @model_validator(mode="after")
    def _one_request_fits_the_inflight_budget(self) -> IngestConfig:
        if self.max_inflight_body_bytes < self.max_body_bytes + self.max_decompressed_bytes:
            raise ValueError(
                f"max_inflight_body_bytes={self.max_inflight_body_bytes} is below max_body_bytes + "
                f"max_decompressed_bytes={self.max_body_bytes + self.max_decompressed_bytes}: a request within "
                "the per-request limits could never be handled"
            )
        return self

    @model_validator(mode="after")
    def _dead_letters_fit_a_request(self) -> IngestConfig:
        # A dead letter carries its original base64-encoded (4/3) plus the reason and metadata. One message
        # too large for Kafka would fail the whole transaction it shares with other requests.
        needed = self.dead_letter_max_original_bytes * 4 // 3 + 16_384
        if needed > self.producer.max_request_size:
            raise ValueError(
                f"dead_letter_max_original_bytes={self.dead_letter_max_original_bytes} makes dead letters of up to "
                f"{needed} bytes, over producer.max_request_size={self.producer.max_request_size}"
            )
        return self
