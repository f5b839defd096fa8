"""CloudEvents as LiteLLM's OpenMeter integration sends them (``type: litellm_tokens``).

LiteLLM builds ``{"specversion": "1.0", "type": "litellm_tokens", "id": <call id>, "time": ...,
"subject": <end user>, "source": "litellm-proxy", "data": {"model", "cost", "prompt_tokens",
"completion_tokens", "total_tokens"}}``. Some LiteLLM versions send ``subject`` as a one-element
list; both are accepted. A CloudEvent whose ``data`` is a canonical GatewayEvent is accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import GatewayEvent, Status
from spendwatch.schemas.normalize import iso_time, mapping, money, resolve_cost, text, tokens_from_usage

from . import canonical
from .build import build_event
from .config import DEFAULT_ADAPTERS_CONFIG, AdaptersConfig

GATEWAY = "litellm"

FIELD_MAP = {
    "event_id": "id",
    "event_time": "time",
    "user": "subject",
    "model": "data.model",
    "input_tokens": "data.prompt_tokens",
    "output_tokens": "data.completion_tokens",
    "cost_usd": "data.cost",
}


def looks_like(data: Mapping[str, Any]) -> bool:
    return "specversion" in data and "type" in data


def _subject(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise ParseError("validation", "subject must be one user id", "subject", "cloudevents")
        value = value[0]
    return text(value, "subject")


def event_from_cloudevent(event: Mapping[str, Any], config: AdaptersConfig | None = None) -> GatewayEvent:
    """The canonical event for one CloudEvent; raises :class:`~spendwatch.schemas.errors.ParseError`."""
    config = config or DEFAULT_ADAPTERS_CONFIG
    data = mapping(event.get("data"), "data")
    if "event_id" in data and "gateway" in data:
        try:
            return canonical.event_from_dict(data, config)
        except ParseError as exc:
            raise exc.with_prefix("data") from None
    event_time = iso_time(event.get("time"), "time")
    tokens = tokens_from_usage(data, "data.")
    model = text(data.get("model"), "data.model", required=True)
    status = Status.failure if data.get("status") in ("failure", "error") else Status.success
    source = text(event.get("source"), "source") or ""
    fields: dict[str, Any] = {
        "event_id": text(event.get("id"), "id", required=True),
        "event_time": event_time,
        "gateway": GATEWAY if "litellm" in source or event.get("type") == "litellm_tokens" else "cloudevents",
        "user": _subject(event.get("subject")),
        "api_key_hash": text(data.get("api_key_hash"), "data.api_key_hash"),
        "team": text(data.get("team"), "data.team"),
        "model": model,
        "provider": text(data.get("provider"), "data.provider"),
        "status": status,
        **tokens.as_event_fields(),
        **resolve_cost(
            gateway_cost=money(data.get("cost"), "data.cost"), tokens=tokens, model=model or "unknown",
            provider=text(data.get("provider"), "data.provider"), status=status, at=event_time,
            compute_missing=config.pricing.compute_missing_costs,
        ),
    }
    return build_event(fields, gateway="cloudevents", field_map=FIELD_MAP)
