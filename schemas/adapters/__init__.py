"""Adapters: what gateways really emit -> canonical :class:`GatewayEvent` / :class:`OutcomeEvent`.

One module per format; :func:`parse_message` detects the format of one message and calls it.

>>> from spendwatch.schemas.adapters import parse_message
>>> [e.model for e in parse_message(b'{"event_id":"e1","event_time":"2026-01-01T00:00:00Z",'
...     b'"gateway":"mine","user":"ann","model":"gpt-4o","input_tokens":1000,"output_tokens":100}')]
['gpt-4o']
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.model_names import split_provider
from spendwatch.schemas.outcome import OutcomeEvent

from . import canonical, cloudevents, litellm, openrouter, otel
from .config import DEFAULT_ADAPTERS_CONFIG, AdaptersConfig
from .detect import (
    CANONICAL_EVENT, CANONICAL_OUTCOME, CLOUDEVENTS, LITELLM, OPENROUTER, OTEL_SPAN, OTLP, detect_format,
)

__all__ = ["AdaptersConfig", "ParseError", "ParseResult", "detect_format", "parse_into", "parse_message",
           "parse_message_partial"]

log = logging.getLogger(__name__)

Record = GatewayEvent | OutcomeEvent


def _decode(raw: bytes | str | Mapping[str, Any] | list[Any], config: AdaptersConfig) -> Any:
    if isinstance(raw, Mapping | list):
        return raw
    if isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    if not isinstance(raw, bytes | str):
        raise ParseError("validation", f"a message must be bytes, str or a dict, got {type(raw).__name__}")
    if len(raw) > config.max_message_bytes:
        raise ParseError("too_large", f"message is {len(raw)} bytes, the cap is {config.max_message_bytes}")
    if not raw or not raw.strip():
        raise ParseError("invalid_json", "empty message")
    return canonical.loads(raw)


def _parse_one(data: Any, config: AdaptersConfig, errors: list[ParseError] | None) -> list[Record]:
    fmt = detect_format(data)
    try:
        if fmt == CANONICAL_EVENT:
            return [canonical.event_from_dict(data, config)]
        if fmt == CANONICAL_OUTCOME:
            return [canonical.outcome_from_dict(data)]
        if fmt == LITELLM:
            return [litellm.event_from_litellm(data, config)]
        if fmt == OPENROUTER:
            return [openrouter.event_from_openrouter(data, config)]
        if fmt == CLOUDEVENTS:
            return [cloudevents.event_from_cloudevent(data, config)]
        if fmt == OTLP:
            return list(otel.events_from_otlp(data, config, errors))
        if fmt == OTEL_SPAN:
            event = otel.event_from_span(data, None, config)
            if event is None:
                raise ParseError("validation", "span has no GenAI model and usage attributes", "attributes", "otel")
            return [event]
    except ParseError as exc:
        if exc.gateway is None:
            raise ParseError(exc.error_type, exc.reason, exc.field, fmt) from None
        raise
    raise AssertionError(fmt)  # pragma: no cover


def _parse(raw: Any, config: AdaptersConfig | None, errors: list[ParseError] | None) -> list[Record]:
    records = _parse_records(raw, config, errors)
    for i, record in enumerate(records):
        if isinstance(record, GatewayEvent) and "/" in record.model:
            records[i] = _one_model_name(record)
    return records


def _one_model_name(event: GatewayEvent) -> GatewayEvent:
    """``openai/gpt-4o`` (LiteLLM proxy) and ``gpt-4o`` (SDK) are one model: see :mod:`~spendwatch.schemas.model_names`."""
    model, provider = split_provider(event.model, event.provider)
    if model == event.model:
        return event
    return event.model_copy(update={"model": model, "provider": provider})


def _parse_records(raw: Any, config: AdaptersConfig | None, errors: list[ParseError] | None) -> list[Record]:
    config = config or DEFAULT_ADAPTERS_CONFIG
    try:
        if isinstance(raw, bytes) and len(raw) <= config.max_message_bytes and b'"event_id"' in raw and b'"cost_usd"' in raw:
            try:  # the canonical fast path: one pydantic parse, no intermediate dict
                return [GatewayEvent.model_validate_json(raw)]
            except ValueError:
                pass  # not canonical after all, a cost to compute, or bad: the full path decides and explains
        data = _decode(raw, config)
        if isinstance(data, list):  # a batch: LiteLLM's generic_api logger posts lists of payloads
            if len(data) > config.max_records_per_message:
                raise ParseError("too_large", f"{len(data)} records, at most {config.max_records_per_message}")
            out: list[Record] = []
            for i, item in enumerate(data):
                try:
                    out.extend(_parse_one(item, config, errors))
                except ParseError as exc:
                    exc = exc.with_prefix(f"[{i}]")
                    if errors is None:
                        raise exc from None
                    errors.append(exc)
            return out
        return _parse_one(data, config, errors)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("too_large", "message is nested too deeply") from None
    except Exception as exc:  # a bug in an adapter must not take a worker down: dead-letter it, loudly
        log.exception("adapter bug while parsing a message (payload not logged)")
        raise ParseError("internal", f"unexpected {type(exc).__name__} while parsing: {str(exc)[:300]}") from None


def parse_message(
    raw: bytes | str | Mapping[str, Any] | list[Any], config: AdaptersConfig | None = None
) -> list[Record]:
    """The canonical records in one gateway message, whatever its format.

    Parameters
    ----------
    raw
        One message: JSON bytes or text, or an already decoded object. A JSON array is a batch
        (LiteLLM's ``generic_api`` logger posts lists); an OTLP export yields one event per GenAI span.
    config
        Adapter settings; defaults when ``None``.

    Returns
    -------
    list
        :class:`GatewayEvent` and :class:`OutcomeEvent` records, prompt and response text dropped.

    Raises
    ------
    ParseError
        The only exception this raises, for any input: its ``error_type``, ``field`` and
        ``reason`` say what was wrong. Any bad record fails the whole message; use
        :func:`parse_message_partial` to keep the good records of a batch.
    """
    return _parse(raw, config, None)


@dataclass
class ParseResult:
    records: list[Record] = field(default_factory=list)
    errors: list[ParseError] = field(default_factory=list)


def parse_message_partial(
    raw: bytes | str | Mapping[str, Any] | list[Any], config: AdaptersConfig | None = None
) -> ParseResult:
    """Like :func:`parse_message`, but a bad record in a batch or a bad span in an OTLP export is
    reported in ``errors`` while the good ones are still returned. Never raises."""
    errors: list[ParseError] = []
    return ParseResult(parse_into(raw, config, errors), errors)


def parse_into(
    raw: bytes | str | Mapping[str, Any] | list[Any], config: AdaptersConfig | None, errors: list[ParseError]
) -> list[Record]:
    """:func:`parse_message_partial` for a hot loop: the good records are returned, every error is
    appended to ``errors``. Never raises."""
    try:
        return _parse(raw, config, errors)
    except ParseError as exc:
        errors.append(exc)
        return []


def dumps(record: Record) -> bytes:
    """Canonical JSON bytes for a record (what goes on the events / outcomes topics)."""
    return orjson.dumps(record.model_dump(mode="json", exclude_none=True))
