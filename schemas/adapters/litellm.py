"""LiteLLM's ``StandardLoggingPayload``: what its ``generic_api``, custom-callback and logging
integrations send (``kwargs["standard_logging_object"]`` in a ``CustomLogger``).

Who pays comes from ``metadata.user_api_key_*`` (the proxy fills these from the virtual key);
tokens from ``metadata.usage_object`` (then ``hidden_params.usage_object``, then the top-level
counts); the cost from ``response_cost``. ``messages`` and ``response`` (prompt and completion
text) are never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spendwatch.schemas.event import GatewayEvent, Status
from spendwatch.schemas.normalize import (
    Tokens, epoch_seconds, inclusive, mapping, money, resolve_cost, text, token_count, tokens_from_usage,
)

from .build import build_event, tag_list
from .config import DEFAULT_ADAPTERS_CONFIG, AdaptersConfig

GATEWAY = "litellm"

#: Where each canonical field comes from, for error messages.
FIELD_MAP = {
    "event_id": "litellm_call_id",
    "event_time": "startTime",
    "api_key_hash": "metadata.user_api_key_hash",
    "api_key_alias": "metadata.user_api_key_alias",
    "user": "metadata.user_api_key_user_id",
    "team": "metadata.user_api_key_team_id",
    "org": "metadata.user_api_key_org_id",
    "project": "metadata.user_api_key_project_id",
    "session_id": "trace_id",
    "tags": "request_tags",
    "model": "model",
    "provider": "custom_llm_provider",
    "error_type": "error_information.error_class",
    "input_tokens": "metadata.usage_object.prompt_tokens",
    "output_tokens": "metadata.usage_object.completion_tokens",
    "cost_usd": "response_cost",
    "latency_ms": "endTime",
}


def looks_like(data: Mapping[str, Any]) -> bool:
    """Is this a StandardLoggingPayload (or a callback's kwargs wrapping one)?"""
    if isinstance(data.get("standard_logging_object"), Mapping):
        return True
    return "litellm_call_id" in data or ("call_type" in data and "response_cost" in data and "metadata" in data)


def _tokens(payload: Mapping[str, Any], metadata: Mapping[str, Any]) -> Tokens:
    usage = metadata.get("usage_object")
    if isinstance(usage, Mapping) and usage:
        return tokens_from_usage(usage, "metadata.usage_object.")
    hidden = mapping(payload.get("hidden_params"), "hidden_params")
    usage = hidden.get("usage_object")
    if isinstance(usage, Mapping) and usage:
        return tokens_from_usage(usage, "hidden_params.usage_object.")
    return inclusive(
        token_count(payload.get("prompt_tokens"), "prompt_tokens"), 0, 0,
        token_count(payload.get("completion_tokens"), "completion_tokens"), 0,
    )


def _pricing_aliases(payload: Mapping[str, Any], model: str | None) -> list[str]:
    """Other names LiteLLM gives the deployed model: its cost-map key and the provider model name."""
    names = []
    info = payload.get("model_map_information")
    if isinstance(info, Mapping) and isinstance(info.get("model_map_key"), str):
        names.append(info["model_map_key"])
    hidden = payload.get("hidden_params")
    if isinstance(hidden, Mapping) and isinstance(hidden.get("litellm_model_name"), str):
        names.append(hidden["litellm_model_name"])
    return [n for n in dict.fromkeys(names) if n and n != model and len(n) <= 512]


def event_from_litellm(payload: Mapping[str, Any], config: AdaptersConfig | None = None) -> GatewayEvent:
    """The canonical event for one StandardLoggingPayload; raises :class:`~spendwatch.schemas.errors.ParseError`."""
    config = config or DEFAULT_ADAPTERS_CONFIG
    if isinstance(payload.get("standard_logging_object"), Mapping):
        payload = payload["standard_logging_object"]
    metadata = mapping(payload.get("metadata"), "metadata")
    error_info = mapping(payload.get("error_information"), "error_information")

    status_raw = text(payload.get("status"), "status") or "success"
    status = Status.failure if status_raw.lower() in ("failure", "error", "failed") else Status.success
    tokens = _tokens(payload, metadata)
    event_time = epoch_seconds(payload.get("startTime"), "startTime")
    end = payload.get("endTime")
    latency_ms = None
    if isinstance(end, int | float) and not isinstance(end, bool):
        latency_ms = max(0.0, (epoch_seconds(end, "endTime") - event_time).total_seconds() * 1000)

    model = text(payload.get("model"), "model") or text(payload.get("model_group"), "model_group")
    provider = text(payload.get("custom_llm_provider"), "custom_llm_provider")
    gateway_cost = money(payload.get("response_cost"), "response_cost")
    zero_for_tokens = (gateway_cost == 0 and status is Status.success and tokens.total > 0
                       and not payload.get("cache_hit"))
    if zero_for_tokens:
        # LiteLLM writes 0 when it cannot price a model (response_cost_failure_debug_info, or a custom
        # deployment): not a real zero. Priced from the tokens (computed), else unknown with the reason.
        gateway_cost = None
    cost = resolve_cost(
        gateway_cost=gateway_cost, tokens=tokens, model=model or "unknown", provider=provider, status=status,
        at=event_time, compute_missing=config.pricing.compute_missing_costs,
    )
    if cost["cost_usd"] is None and gateway_cost is None:
        # a proxy alias (model "my-gpt") may still name a priced model in LiteLLM's own lookup keys
        for alias in _pricing_aliases(payload, model):
            retry = resolve_cost(
                gateway_cost=None, tokens=tokens, model=alias, provider=provider, status=status, at=event_time,
                compute_missing=config.pricing.compute_missing_costs,
            )
            if retry["cost_usd"] is not None:
                cost = retry
                break

    if zero_for_tokens and cost["cost_usd"] is None:
        cost["cost_unknown_reason"] = (f"LiteLLM reported response_cost 0 for {tokens.total} tokens; "
                                       f"{cost['cost_unknown_reason']}")[:1024]

    session = text(payload.get("session_id"), "session_id")
    if session is None and config.litellm.session_from_trace_id:
        session = text(payload.get("trace_id"), "trace_id")
    error_type = None
    if status is Status.failure:
        error_type = (
            text(error_info.get("error_class"), "error_information.error_class")
            or text(error_info.get("error_code"), "error_information.error_code")
            or "unknown_error"
        )
    fields: dict[str, Any] = {
        "event_id": text(payload.get("litellm_call_id"), "litellm_call_id") or text(payload.get("id"), "id"),
        "event_time": event_time,
        "gateway": GATEWAY,
        "api_key_hash": text(metadata.get("user_api_key_hash"), "metadata.user_api_key_hash"),
        "api_key_alias": text(metadata.get("user_api_key_alias"), "metadata.user_api_key_alias"),
        "user": text(metadata.get("user_api_key_user_id"), "metadata.user_api_key_user_id")
        or text(payload.get("end_user"), "end_user")
        or text(metadata.get("user_api_key_end_user_id"), "metadata.user_api_key_end_user_id"),
        "team": text(metadata.get("user_api_key_team_id"), "metadata.user_api_key_team_id")
        or text(metadata.get("team_id"), "metadata.team_id"),
        "org": text(metadata.get("user_api_key_org_id"), "metadata.user_api_key_org_id"),
        "project": text(metadata.get("user_api_key_project_id"), "metadata.user_api_key_project_id"),
        "tags": tag_list(payload.get("request_tags"), "request_tags"),
        "session_id": session,
        "model": model,
        "provider": provider,
        "status": status,
        "error_type": error_type,
        **tokens.as_event_fields(),
        **cost,
        "latency_ms": latency_ms,
    }
    return build_event(fields, gateway=GATEWAY, field_map=FIELD_MAP)
