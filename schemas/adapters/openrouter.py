"""OpenRouter's chat-completion response with its ``usage`` object (``usage: {include: true}``).

OpenRouter reports ``usage.cost`` in credits (1 credit = 1 USD) and, for bring-your-own-key
requests (``is_byok``), only its fee there: the provider's charge is in
``usage.cost_details.upstream_inference_cost`` and is added.

The response itself does not say who paid, so the emitter adds attribution next to it,
either top-level or under a ``spendwatch`` object::

    {"id": "gen-...", "model": "anthropic/claude-sonnet-4", "usage": {...},
     "spendwatch": {"api_key_hash": "...", "user": "ann", "team": "search", "session_id": "run-42"}}

Any other OpenAI-compatible response (vLLM, Azure, a home-grown proxy) is read the same way when
it carries a ``spendwatch`` attribution object; its gateway is then ``openai_compatible`` unless
``spendwatch.gateway`` names it. ``choices`` (the completion text) is never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from spendwatch.schemas.event import GatewayEvent, Status
from spendwatch.schemas.normalize import epoch_seconds, mapping, money, resolve_cost, text, tokens_from_usage

from .build import build_event, tag_list
from .config import DEFAULT_ADAPTERS_CONFIG, AdaptersConfig

GATEWAY = "openrouter"

#: Attribution keys accepted top-level or under ``spendwatch`` / ``metadata``.
ATTRIBUTION = {
    "api_key_hash": ("api_key_hash", "key_hash"),
    "api_key_alias": ("api_key_alias", "key_alias", "key_name"),
    "user": ("user", "user_id"),
    "team": ("team", "team_id"),
    "org": ("org", "org_id"),
    "project": ("project", "project_id"),
    "session_id": ("session_id", "session", "conversation_id"),
}

FIELD_MAP = {
    "event_id": "id",
    "event_time": "created",
    "model": "model",
    "provider": "provider",
    "input_tokens": "usage.prompt_tokens",
    "output_tokens": "usage.completion_tokens",
    "cost_usd": "usage.cost",
    "api_key_hash": "spendwatch.api_key_hash",
}


def _is_openrouter(data: Mapping[str, Any], usage: Mapping[str, Any]) -> bool:
    return "cost" in usage or "is_byok" in usage or str(data.get("id", "")).startswith("gen-")


def looks_like(data: Mapping[str, Any]) -> bool:
    """An OpenRouter response, or any OpenAI-compatible response the emitter attributed (``spendwatch``)."""
    usage = data.get("usage")
    if not isinstance(usage, Mapping) or "model" not in data:
        return False
    return _is_openrouter(data, usage) or isinstance(data.get("spendwatch"), Mapping)


def _attribution(data: Mapping[str, Any]) -> dict[str, Any]:
    sources = [("spendwatch.", mapping(data.get("spendwatch"), "spendwatch")),
               ("metadata.", mapping(data.get("metadata"), "metadata")), ("", data)]
    out: dict[str, Any] = {}
    for canonical, names in ATTRIBUTION.items():
        for prefix, source in sources:
            value = next(((n, source[n]) for n in names if source.get(n) not in (None, "")), None)
            if value is not None:
                out[canonical] = text(value[1], f"{prefix}{value[0]}")
                break
    for prefix, source in sources:
        if source.get("tags") is not None:
            out["tags"] = tag_list(source["tags"], f"{prefix}tags")
            break
    return out


def event_from_openrouter(data: Mapping[str, Any], config: AdaptersConfig | None = None) -> GatewayEvent:
    """The canonical event for one OpenRouter response; raises :class:`~spendwatch.schemas.errors.ParseError`."""
    config = config or DEFAULT_ADAPTERS_CONFIG
    usage = mapping(data.get("usage"), "usage")
    tokens = tokens_from_usage(usage, "usage.")
    attribution = _attribution(data)
    extra = mapping(data.get("spendwatch"), "spendwatch")
    if extra.get("event_time") is not None:
        event_time = epoch_seconds(extra["event_time"], "spendwatch.event_time")
    elif data.get("created") is not None:
        event_time = epoch_seconds(data["created"], "created")
    else:
        event_time = datetime.now(UTC)
    error = data.get("error")
    status = Status.failure if error else Status.success
    error_type = None
    if error:
        err = error if isinstance(error, Mapping) else {"code": error}
        error_type = text(err.get("code"), "error.code") or text(err.get("type"), "error.type") or "error"

    model = text(data.get("model"), "model", required=True)
    provider = text(data.get("provider"), "provider")
    cost = money(usage.get("cost"), "usage.cost")
    if cost is not None and usage.get("is_byok") is True:
        details = mapping(usage.get("cost_details"), "usage.cost_details")
        upstream = money(details.get("upstream_inference_cost"), "usage.cost_details.upstream_inference_cost")
        cost = cost + (upstream or 0)
    latency = extra.get("latency_ms")
    fields: dict[str, Any] = {
        "event_id": text(data.get("id"), "id", required=True),
        "event_time": event_time,
        "gateway": text(extra.get("gateway"), "spendwatch.gateway") or (
            GATEWAY if _is_openrouter(data, usage) else "openai_compatible"
        ),
        **attribution,
        "model": model,
        "provider": provider.lower() if provider else None,
        "status": status,
        "error_type": error_type,
        **tokens.as_event_fields(),
        **resolve_cost(
            gateway_cost=cost, tokens=tokens, model=model or "unknown", provider=None, status=status,
            at=event_time, compute_missing=config.pricing.compute_missing_costs,
        ),
        "latency_ms": latency,
    }
    return build_event(fields, gateway=GATEWAY, field_map=FIELD_MAP)
