"""The canonical gateway request event.

Every adapter in :mod:`spendwatch.schemas.adapters` turns what a gateway emits into a
:class:`GatewayEvent`; everything downstream (detectors, sinks, pagers) reads only
this model.

Token semantics follow OpenTelemetry GenAI: ``input_tokens`` *includes* cache-read and
cache-write tokens, ``output_tokens`` *includes* reasoning tokens. Adapters normalise
provider conventions into these so no token is counted twice.

Money is an exact :class:`~decimal.Decimal` in US dollars, never a float.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Largest token count one request may claim; anything above is a corrupt message.
MAX_TOKENS = 100_000_000
#: Largest cost one request may claim (USD); anything above is a corrupt message.
MAX_COST_USD = Decimal("100000")
#: Decimals of a per-event cost (ClickHouse ``Decimal(38, 12)``); more are rounded half-even, never truncated.
COST_DECIMALS = 12
COST_QUANTUM = Decimal(1).scaleb(-COST_DECIMALS)
#: Longest identifier (key hash, user, session id, model name...).
MAX_ID_LEN = 512

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]


class Status(StrEnum):
    success = "success"
    failure = "failure"


class CostSource(StrEnum):
    gateway = "gateway"  # the gateway reported it (LiteLLM response_cost, OpenRouter usage.cost)
    computed = "computed"  # spendwatch computed it from tokens with genai-prices
    unknown = "unknown"  # no price known for the model; ``cost_usd`` is null, see ``cost_unknown_reason``


class GatewayEvent(BaseModel):
    """One LLM request seen by a gateway."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    event_id: Identifier = Field(description="Unique per request (the gateway's call id); the idempotency key downstream.")
    event_time: datetime = Field(description="When the request started, UTC.")
    gateway: Identifier = Field(description="Which gateway emitted it: litellm, openrouter, otel, portkey, ...")

    api_key_hash: Identifier | None = Field(default=None, description="Hash of the virtual/API key that paid.")
    api_key_alias: Identifier | None = Field(default=None, description="Human-readable key name.")
    user: Identifier | None = Field(default=None, description="The user (person or service) who made the call.")
    team: Identifier | None = Field(default=None, description="The team that owns the key or user.")
    org: Identifier | None = Field(default=None, description="The organisation.")
    project: Identifier | None = Field(default=None, description="The project the spend is booked to.")
    tags: tuple[Identifier, ...] = Field(default=(), max_length=64, description="Free-form request tags.")
    session_id: Identifier | None = Field(default=None, description="Agent run / conversation / trace id.")

    model: Identifier = Field(description="The model that was requested.")
    provider: Identifier | None = Field(default=None, description="Who served it: openai, anthropic, aws, google...")
    status: Status = Field(default=Status.success, description="success or failure.")
    error_type: Identifier | None = Field(default=None, description="For failures: the error class, e.g. RateLimitError.")

    input_tokens: TokenCount = Field(default=0, description="All prompt tokens, cache reads and writes included.")
    cache_read_tokens: TokenCount = Field(default=0, description="Part of input_tokens read from the prompt cache.")
    cache_write_tokens: TokenCount = Field(default=0, description="Part of input_tokens written to the prompt cache.")
    output_tokens: TokenCount = Field(default=0, description="All completion tokens, reasoning included.")
    reasoning_tokens: TokenCount = Field(default=0, description="Part of output_tokens spent on reasoning.")

    cost_usd: Decimal | None = Field(
        default=None, ge=0, le=MAX_COST_USD, allow_inf_nan=False,
        description="Exact cost in US dollars; null only when cost_source is unknown.",
    )
    cost_source: CostSource = Field(
        default=CostSource.gateway,
        description="gateway: reported by the gateway; computed: by spendwatch from tokens with genai-prices; "
        "unknown: no price known (cost_usd is null).",
    )
    cost_unknown_reason: str | None = Field(default=None, max_length=1024, description="Why cost_usd is null.")
    latency_ms: float | None = Field(
        default=None, ge=0, le=86_400_000, allow_inf_nan=False, description="Request duration, milliseconds."
    )

    @field_validator("cost_usd")
    @classmethod
    def _round_cost(cls, value: Decimal | None) -> Decimal | None:
        """More than :data:`COST_DECIMALS` decimals (a computed price) rounds half-even to that many: what ClickHouse's
        ``Decimal(38, 12)`` stores, so the stored sum equals the events' sum to the last digit."""
        if value is not None and value.is_finite() and value.as_tuple().exponent < -COST_DECIMALS:
            return value.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)
        return value

    @field_validator("event_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is UTC:
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        if not value.utcoffset():
            # "Z" / "+00:00" parse to pydantic's zero-offset zone: already UTC in every comparison, timestamp and
            # serialisation; kept as it is (a replace() cost ~0.5 µs per event in the parse stage)
            return value
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> GatewayEvent:
        if self.api_key_hash is None and self.user is None:
            raise ValueError("api_key_hash and user are both missing: spend must be attributable to a key or a user")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cache_read_tokens + cache_write_tokens exceed input_tokens; input_tokens must include cached tokens"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens exceed output_tokens; output_tokens must include reasoning tokens")
        if self.cost_usd is None and self.cost_source is not CostSource.unknown:
            raise ValueError("cost_usd is null but cost_source is not 'unknown'")
        return self

    @property
    def cost_micros(self) -> int:
        """Cost in integer micro-dollars (0 when unknown), rounded half-even."""
        if self.cost_usd is None:
            return 0
        return int((self.cost_usd * 1_000_000).to_integral_value())

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    def scope_value(self, scope: str) -> str | None:
        """The subject of this event for a detector scope (``key``, ``user``, ``team``, ``session``, ``org``)."""
        if scope == "key":
            return self.api_key_hash or (f"user:{self.user}" if self.user else None)
        if scope == "session":
            return self.session_id
        return getattr(self, scope)
