"""The canonical JSON itself: :class:`GatewayEvent` and :class:`OutcomeEvent` as spendwatch writes them.

This is the fast path stream workers use for the ``events`` topic: one pydantic
``model_validate_json`` per message (measured faster than ``orjson.loads`` + ``model_validate``,
see ``spendwatch/benchmarks/parse.py``); only messages that fail it (a cost to compute, bad input) take
the slower path through ``orjson`` that computes the cost or names the bad field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import CostSource, GatewayEvent, Status
from spendwatch.schemas.normalize import Tokens, resolve_cost
from spendwatch.schemas.outcome import OutcomeEvent

from .config import DEFAULT_ADAPTERS_CONFIG, AdaptersConfig

GATEWAY = "canonical"


def loads(raw: bytes | str) -> Any:
    """``orjson.loads`` raising :class:`ParseError` (``invalid_json``) with orjson's position."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ParseError("invalid_json", f"not valid JSON: {exc}") from None


def parse_event(raw: bytes) -> GatewayEvent:
    """One canonical GatewayEvent from JSON bytes; raises :class:`ParseError`.

    >>> parse_event(b'{"event_id":"e1","event_time":"2026-01-01T00:00:00Z","gateway":"litellm",'
    ...             b'"user":"ann","model":"gpt-4o","input_tokens":10,"cost_usd":"0.01"}').cost_usd
    Decimal('0.01')
    """
    if b'"cost_usd"' in raw:  # without a cost the fast path would fail: go straight to computing it
        try:
            return GatewayEvent.model_validate_json(raw)
        except (ValidationError, ValueError, TypeError):
            pass  # rare: a null cost to compute, or bad input; the slow path computes or explains
    data = loads(raw)
    if not isinstance(data, dict):
        raise ParseError("validation", f"expected a JSON object, got {type(data).__name__}", gateway=GATEWAY)
    return event_from_dict(data)


def event_from_dict(data: Mapping[str, Any], config: AdaptersConfig | None = None) -> GatewayEvent:
    """Validate a canonical event. A success without ``cost_usd`` (and no ``cost_source``) gets its cost computed."""
    if data.get("cost_usd") is None and "cost_source" not in data:
        return _with_computed_cost(data, config or DEFAULT_ADAPTERS_CONFIG)
    try:
        return GatewayEvent.model_validate(data)
    except ValidationError as exc:
        raise ParseError.from_validation(exc, gateway=GATEWAY) from None
    except (TypeError, ValueError) as exc:  # pydantic may raise these for exotic inputs (e.g. dict keys)
        raise ParseError("validation", str(exc)[:500], gateway=GATEWAY) from None


def _with_computed_cost(data: Mapping[str, Any], config: AdaptersConfig) -> GatewayEvent:
    try:
        event = GatewayEvent.model_validate({**data, "cost_usd": None, "cost_source": CostSource.unknown})
    except ValidationError as exc:
        raise ParseError.from_validation(exc, gateway=GATEWAY) from None
    tokens = Tokens(
        event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens,
        event.reasoning_tokens,
    )
    cost = resolve_cost(
        gateway_cost=None, tokens=tokens, model=event.model, provider=event.provider,
        status=Status(event.status), at=event.event_time, compute_missing=config.pricing.compute_missing_costs,
    )
    if data.get("cost_unknown_reason") and cost["cost_usd"] is None:
        cost["cost_unknown_reason"] = data["cost_unknown_reason"]
    return event.model_copy(update=cost)


def outcome_from_dict(data: Mapping[str, Any]) -> OutcomeEvent:
    try:
        return OutcomeEvent.model_validate(data)
    except ValidationError as exc:
        raise ParseError.from_validation(exc, gateway="canonical_outcome") from None
    except (TypeError, ValueError) as exc:
        raise ParseError("validation", str(exc)[:500], gateway="canonical_outcome") from None


def parse_outcome(raw: bytes) -> OutcomeEvent:
    """One canonical OutcomeEvent from JSON bytes; raises :class:`ParseError`."""
    data = loads(raw)
    if not isinstance(data, dict):
        raise ParseError("validation", f"expected a JSON object, got {type(data).__name__}", gateway="canonical_outcome")
    return outcome_from_dict(data)
