"""OpenTelemetry GenAI spans, in the OTLP/JSON form of ``ExportTraceServiceRequest``.

Input is what ``google.protobuf.json_format.MessageToDict`` yields from the protobuf (camelCase
keys, int64 as strings, attribute values as ``{"stringValue": ...}``), or the same with
``preserving_proto_field_name=True`` (snake_case). Spans without GenAI attributes (HTTP, DB,
framework spans) are skipped.

Attributes read (GenAI semantic conventions, current and deprecated)::

    gen_ai.request.model / gen_ai.response.model       -> model
    gen_ai.provider.name / gen_ai.system (deprecated)  -> provider
    gen_ai.usage.input_tokens / gen_ai.usage.prompt_tokens (deprecated)       -> input (cached included)
    gen_ai.usage.output_tokens / gen_ai.usage.completion_tokens (deprecated)  -> output
    gen_ai.usage.cache_read.input_tokens, gen_ai.usage.cache_creation.input_tokens
    gen_ai.usage.reasoning.output_tokens
    gen_ai.conversation.id                              -> session (configurable)
    error.type / span status                            -> status, error type

Which span or resource attributes carry the key, user, team... is configured in
:class:`~spendwatch.schemas.adapters.config.OtelAttributesConfig`. Prompt and completion
attributes (``gen_ai.input.messages``, ``gen_ai.prompt``...) are never read.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import GatewayEvent, Status
from spendwatch.schemas.normalize import inclusive, money, resolve_cost, text, token_count, unix_nanos

from .build import build_event, tag_list
from .config import DEFAULT_ADAPTERS_CONFIG, AdaptersConfig

GATEWAY = "otel"

MODEL_ATTRS = ("gen_ai.request.model", "gen_ai.response.model")
PROVIDER_ATTRS = ("gen_ai.provider.name", "gen_ai.system")
INPUT_ATTRS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_ATTRS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ_ATTRS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
CACHE_WRITE_ATTRS = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens")
REASONING_ATTRS = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens")
MAX_ATTRIBUTES = 1024
MAX_ARRAY = 256


def _get(d: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = d.get(camel)
    return d.get(snake) if value is None else value


def _any_value(value: Any, field: str, depth: int = 0) -> Any:
    """A Python value from an OTLP ``AnyValue`` in JSON form."""
    if type(value) is not dict or not value:  # noqa: E721 - JSON objects are dicts; fast check
        return None
    found = value.get("stringValue")
    if found is not None:
        return found
    for camel, snake in (("string_value", "string_value"), ("boolValue", "bool_value"),
                         ("doubleValue", "double_value")):
        if camel in value or snake in value:
            return _get(value, camel, snake)
    if "intValue" in value or "int_value" in value:
        raw = _get(value, "intValue", "int_value")
        if isinstance(raw, bool):
            raise ParseError("validation", "intValue must be an integer", field, GATEWAY)
        if isinstance(raw, str) and raw.lstrip("-").isdigit() and len(raw) <= 20:
            return int(raw)
        if isinstance(raw, int):
            return raw
        raise ParseError("validation", f"intValue must be an integer, got {raw!r:.40}", field, GATEWAY)
    if depth < 2 and ("arrayValue" in value or "array_value" in value):
        arr = _get(value, "arrayValue", "array_value")
        values = arr.get("values", []) if isinstance(arr, Mapping) else []
        if not isinstance(values, list) or len(values) > MAX_ARRAY:
            raise ParseError("validation", f"arrayValue must be a list of at most {MAX_ARRAY} values", field, GATEWAY)
        return [_any_value(v, field, depth + 1) for v in values]
    return None  # bytesValue, kvlistValue: never an attribution or usage value


def attributes(items: Any, field: str) -> dict[str, Any]:
    """``[{"key": k, "value": AnyValue}, ...]`` as a dict."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ParseError("validation", "attributes must be a list of {key, value}", field, GATEWAY)
    if len(items) > MAX_ATTRIBUTES:
        raise ParseError("too_large", f"{len(items)} attributes, at most {MAX_ATTRIBUTES}", field, GATEWAY)
    out: dict[str, Any] = {}
    for i, item in enumerate(items):
        if type(item) is not dict or type(item.get("key")) is not str:  # noqa: E721
            raise ParseError("validation", "an attribute must be {key: string, value: AnyValue}", f"{field}[{i}]", GATEWAY)
        out[item["key"]] = _any_value(item.get("value"), f"{field}[{i}].value")
    return out


def _id(value: Any, field: str, length: int) -> str:
    """A trace/span id as lowercase hex, from OTLP/JSON hex or MessageToDict's base64."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ParseError("validation", "required id is missing or not a string", field, GATEWAY)
    if len(value) == length * 2:
        try:
            bytes.fromhex(value)
            return value.lower()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("validation", f"not a hex or base64 id: {value!r:.40}", field, GATEWAY) from None
    if len(raw) != length:
        raise ParseError("validation", f"id must be {length} bytes", field, GATEWAY)
    return raw.hex()


def is_genai(attrs: Mapping[str, Any]) -> bool:
    """Does a span describe a GenAI model call (as opposed to an HTTP, tool or framework span)?"""
    has_model = any(attrs.get(a) for a in MODEL_ATTRS)
    has_usage = any(attrs.get(a) is not None for a in INPUT_ATTRS + OUTPUT_ATTRS)
    return has_model and has_usage or has_model and "gen_ai.operation.name" in attrs


def _first(names: list[str] | tuple[str, ...], *scopes: Mapping[str, Any]) -> tuple[str, Any] | None:
    for scope in scopes:
        for name in names:
            value = scope.get(name)
            if value not in (None, "", []):
                return name, value
    return None


def _count(attrs: Mapping[str, Any], names: tuple[str, ...], prefix: str) -> int:
    found = _first(names, attrs)
    return token_count(found[1], f"{prefix}{found[0]}") if found else 0


def event_from_span(
    span: Mapping[str, Any], resource: Mapping[str, Any] | None = None, config: AdaptersConfig | None = None,
    *, field: str = "",
) -> GatewayEvent | None:
    """The canonical event for one span (``None`` if it is not a GenAI span).

    ``resource`` is the decoded resource attributes; ``field`` the span's path in the message.
    """
    config = config or DEFAULT_ADAPTERS_CONFIG
    resource = resource or {}
    prefix = f"{field}." if field else ""
    attrs = attributes(span.get("attributes"), f"{prefix}attributes")
    if not is_genai(attrs):
        return None
    a = f"{prefix}attributes."
    tokens = inclusive(
        _count(attrs, INPUT_ATTRS, a), _count(attrs, CACHE_READ_ATTRS, a), _count(attrs, CACHE_WRITE_ATTRS, a),
        _count(attrs, OUTPUT_ATTRS, a), _count(attrs, REASONING_ATTRS, a),
    )
    start = unix_nanos(_get(span, "startTimeUnixNano", "start_time_unix_nano"), f"{prefix}startTimeUnixNano")
    end_raw = _get(span, "endTimeUnixNano", "end_time_unix_nano")
    latency = None
    if end_raw not in (None, "0", 0):
        end = unix_nanos(end_raw, f"{prefix}endTimeUnixNano")
        latency = max(0.0, (end - start).total_seconds() * 1000)

    status_obj = span.get("status") if isinstance(span.get("status"), Mapping) else {}
    code = status_obj.get("code")
    failed = code in ("STATUS_CODE_ERROR", 2, "2") or attrs.get("error.type") not in (None, "")
    status = Status.failure if failed else Status.success
    error_type = None
    if failed:
        error_type = text(attrs.get("error.type"), f"{a}error.type") or "error"

    model_attr = _first(MODEL_ATTRS, attrs)
    model = text(model_attr[1], f"{a}{model_attr[0]}") if model_attr else None
    provider_attr = _first(PROVIDER_ATTRS, attrs, resource)
    provider = text(provider_attr[1], f"{a}{provider_attr[0]}") if provider_attr else None

    cfg = config.otel

    def lookup(names: list[str]) -> str | None:
        found = _first(names, attrs, resource)
        if found is None:
            return None
        where = f"{a}{found[0]}" if found[0] in attrs else f"resource.attributes.{found[0]}"
        return text(found[1] if not isinstance(found[1], list) else ",".join(map(str, found[1])), where)

    cost_attr = _first(cfg.cost, attrs)
    gateway_cost = money(cost_attr[1], f"{a}{cost_attr[0]}") if cost_attr else None
    tags_attr = _first(cfg.tags, attrs, resource)
    fields: dict[str, Any] = {
        "event_id": f"{_id(_get(span, 'traceId', 'trace_id'), f'{prefix}traceId', 16)}:"
        f"{_id(_get(span, 'spanId', 'span_id'), f'{prefix}spanId', 8)}",
        "event_time": start,
        "gateway": text(resource.get("spendwatch.gateway"), "resource.attributes.spendwatch.gateway") or cfg.gateway,
        "api_key_hash": lookup(cfg.key_hash),
        "api_key_alias": lookup(cfg.key_alias),
        "user": lookup(cfg.user),
        "team": lookup(cfg.team),
        "org": lookup(cfg.org),
        "project": lookup(cfg.project),
        "tags": tag_list(tags_attr[1], f"{a}{tags_attr[0]}") if tags_attr else (),
        "session_id": lookup(cfg.session),
        "model": model,
        "provider": provider,
        "status": status,
        "error_type": error_type,
        **tokens.as_event_fields(),
        **resolve_cost(
            gateway_cost=gateway_cost, tokens=tokens, model=model or "unknown", provider=provider, status=status,
            at=start, compute_missing=config.pricing.compute_missing_costs,
        ),
        "latency_ms": latency,
    }
    field_map = {
        "model": f"{a}gen_ai.request.model", "input_tokens": f"{a}gen_ai.usage.input_tokens",
        "output_tokens": f"{a}gen_ai.usage.output_tokens", "api_key_hash": f"{a}{cfg.key_hash[0] if cfg.key_hash else 'key'}",
    }
    return build_event(fields, gateway=GATEWAY, field_map=field_map)


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ParseError("validation", f"expected a list, got {type(value).__name__}", field, GATEWAY)
    return value


def events_from_otlp(
    request: Mapping[str, Any], config: AdaptersConfig | None = None, errors: list[ParseError] | None = None,
) -> list[GatewayEvent]:
    """Canonical events for every GenAI span of an OTLP/JSON ``ExportTraceServiceRequest``.

    Parameters
    ----------
    request
        ``{"resourceSpans": [{"resource": {...}, "scopeSpans": [{"spans": [...]}]}]}``.
    config
        Adapter settings (which attributes carry key, user, team...).
    errors
        If given, a bad span is appended here (as a :class:`ParseError` whose field locates it)
        and the other spans are still returned, so one bad span never loses its neighbours;
        report ``len(errors)`` as OTLP ``partial_success.rejected_spans``. If ``None``, the first
        bad span raises.
    """
    config = config or DEFAULT_ADAPTERS_CONFIG
    events: list[GatewayEvent] = []
    seen = 0
    for r, rs in enumerate(_list(_get(request, "resourceSpans", "resource_spans"), "resourceSpans")):
        rpath = f"resourceSpans[{r}]"
        if not isinstance(rs, Mapping):
            raise ParseError("validation", "expected an object", rpath, GATEWAY)
        res = rs.get("resource") if isinstance(rs.get("resource"), Mapping) else {}
        resource = attributes(res.get("attributes"), f"{rpath}.resource.attributes")
        scope_spans = _get(rs, "scopeSpans", "scope_spans")
        if scope_spans is None:
            scope_spans = _get(rs, "instrumentationLibrarySpans", "instrumentation_library_spans")
        for s, ss in enumerate(_list(scope_spans, f"{rpath}.scopeSpans")):
            spath = f"{rpath}.scopeSpans[{s}]"
            if not isinstance(ss, Mapping):
                raise ParseError("validation", "expected an object", spath, GATEWAY)
            for i, span in enumerate(_list(ss.get("spans"), f"{spath}.spans")):
                seen += 1
                if seen > config.max_records_per_message:
                    raise ParseError(
                        "too_large", f"more than {config.max_records_per_message} spans in one export", None, GATEWAY
                    )
                path = f"{spath}.spans[{i}]"
                try:
                    if not isinstance(span, Mapping):
                        raise ParseError("validation", "a span must be an object", path, GATEWAY)
                    event = event_from_span(span, resource, config, field=path)
                except ParseError as exc:
                    if errors is None:
                        raise
                    errors.append(exc)
                    continue
                if event is not None:
                    events.append(event)
    return events


def looks_like_request(data: Mapping[str, Any]) -> bool:
    return "resourceSpans" in data or "resource_spans" in data


def looks_like_span(data: Mapping[str, Any]) -> bool:
    return ("spanId" in data or "span_id" in data) and ("traceId" in data or "trace_id" in data)
