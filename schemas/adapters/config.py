"""Adapter settings: message size caps, which attributes carry key, user and team, and pricing."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from spendwatch.schemas.event_window import EventTimeConfig
from spendwatch.schemas.pricing import TierThresholds


class OtelAttributesConfig(BaseModel):
    """Which OpenTelemetry span attributes (then resource attributes) identify who pays.

    Each list is tried in order, span attributes first, then the span's resource attributes;
    the first non-empty value wins. Defaults cover the GenAI semantic conventions, the
    ``metadata.*`` attributes LiteLLM's OpenTelemetry callback sets, and ``spendwatch.*``
    attributes you can add yourself.
    """

    model_config = ConfigDict(extra="forbid")

    key_hash: list[str] = Field(
        default=["spendwatch.key_hash", "metadata.user_api_key_hash", "gen_ai.request.api_key_hash", "api_key.hash"],
        description="Attributes holding the hash of the API / virtual key that paid.",
    )
    key_alias: list[str] = Field(
        default=["spendwatch.key_alias", "metadata.user_api_key_alias"],
        description="Attributes holding a readable key name.",
    )
    user: list[str] = Field(
        default=["spendwatch.user", "user.id", "enduser.id", "metadata.user_api_key_user_id", "gen_ai.user.id"],
        description="Attributes holding the user who made the call.",
    )
    team: list[str] = Field(
        default=["spendwatch.team", "metadata.user_api_key_team_id", "team.id"],
        description="Attributes holding the owning team.",
    )
    org: list[str] = Field(
        default=["spendwatch.org", "metadata.user_api_key_org_id", "org.id"],
        description="Attributes holding the organisation.",
    )
    project: list[str] = Field(
        default=["spendwatch.project", "metadata.user_api_key_project_id", "project.id"],
        description="Attributes holding the project.",
    )
    session: list[str] = Field(
        default=["spendwatch.session_id", "gen_ai.conversation.id", "session.id", "metadata.session_id"],
        description="Attributes holding the session / conversation / agent-run id.",
    )
    tags: list[str] = Field(
        default=["spendwatch.tags", "metadata.tags"],
        description="Attributes holding tags (a string array, or a comma-separated string).",
    )
    cost: list[str] = Field(
        default=["spendwatch.cost_usd", "gen_ai.usage.cost", "gen_ai.cost.total_cost", "llm.usage.cost"],
        description="Attributes holding a cost in USD computed by the emitter (used as the gateway cost).",
    )
    gateway: str = Field(default="otel", description="Value of GatewayEvent.gateway for events from spans.")


class LiteLLMAdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_from_trace_id: bool = Field(
        default=True,
        description="Use LiteLLM's trace_id (set from litellm_session_id / litellm_trace_id) as the session "
        "when the payload has no session_id.",
    )


class PricingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    compute_missing_costs: bool = Field(
        default=True,
        description="Compute the cost with genai-prices when a message carries none (cost_source=computed). "
        "Off: such events get cost_source=unknown.",
    )
    tiers: TierThresholds = Field(
        default_factory=TierThresholds,
        description="Price-tier boundaries (input USD per million tokens): the model_tier column in ClickHouse and "
        "the tiers detectors.model_mix_drift compares, which follows this setting.")


class AdaptersConfig(BaseModel):
    """How gateway messages become canonical events."""

    model_config = ConfigDict(extra="forbid")

    max_message_bytes: int = Field(
        default=1_048_576, ge=1024, le=64 * 1_048_576,
        description="Largest message accepted, bytes; bigger ones are dead-lettered as too_large.",
    )
    max_records_per_message: int = Field(
        default=10_000, ge=1,
        description="Most records (spans, batched payloads) one message may carry.",
    )
    otel: OtelAttributesConfig = Field(
        default_factory=OtelAttributesConfig, description="Which OpenTelemetry attributes identify who pays."
    )
    litellm: LiteLLMAdapterConfig = Field(default_factory=LiteLLMAdapterConfig, description="LiteLLM payloads.")
    pricing: PricingConfig = Field(default_factory=PricingConfig, description="Cost computation and price tiers.")
    event_time: EventTimeConfig = Field(
        default_factory=EventTimeConfig,
        description="Event times live ingestion accepts (ingest and the worker's parse stage; never the backtest).",
    )


DEFAULT_ADAPTERS_CONFIG = AdaptersConfig()
