"""Which format is this message? One cheap look at its top-level keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spendwatch.schemas.errors import ParseError

from . import cloudevents, litellm, openrouter, otel

CANONICAL_EVENT = "canonical_event"
CANONICAL_OUTCOME = "canonical_outcome"
LITELLM = "litellm"
OPENROUTER = "openrouter"
CLOUDEVENTS = "cloudevents"
OTLP = "otlp"
OTEL_SPAN = "otel_span"

FORMATS = (CANONICAL_EVENT, CANONICAL_OUTCOME, LITELLM, OPENROUTER, CLOUDEVENTS, OTLP, OTEL_SPAN)


def detect_format(data: Any) -> str:
    """The format name of one decoded JSON message; raises ``ParseError(unknown_format)``.

    >>> detect_format({"event_id": "e", "gateway": "x", "model": "m"})
    'canonical_event'
    >>> detect_format({"resourceSpans": []})
    'otlp'
    """
    if not isinstance(data, Mapping):
        raise ParseError("validation", f"expected a JSON object, got {type(data).__name__}")
    if "event_id" in data and "gateway" in data:
        return CANONICAL_EVENT
    if "outcome_id" in data:
        return CANONICAL_OUTCOME
    if otel.looks_like_request(data):
        return OTLP
    if cloudevents.looks_like(data):
        return CLOUDEVENTS
    if litellm.looks_like(data):
        return LITELLM
    if otel.looks_like_span(data):
        return OTEL_SPAN
    if openrouter.looks_like(data):
        return OPENROUTER
    keys = ", ".join(sorted(map(str, data))[:8])
    raise ParseError(
        "unknown_format",
        f"not a format spendwatch reads (keys: {keys}); expected a canonical event or outcome, a LiteLLM "
        "StandardLoggingPayload, an OpenRouter response with usage, a CloudEvent or an OTLP/JSON trace export",
    )
