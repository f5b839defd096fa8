"""OTLP/HTTP traces: decoding requests and encoding responses, in protobuf or JSON.

Follows the OTLP/HTTP specification: ``POST /v1/traces`` with an
``ExportTraceServiceRequest`` as ``application/x-protobuf`` or ``application/json``; the
response is an ``ExportTraceServiceResponse`` in the request's encoding, with
``partial_success`` when some spans were rejected; errors carry a ``google.rpc.Status``.

Protobuf is turned into the OTLP/JSON form the adapters read
(:func:`spendwatch.schemas.adapters.otel.events_from_otlp`): camelCase names, integer enums,
hex trace and span ids.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .bodies import BodyError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACE_CONTENT_TYPES = frozenset({PROTOBUF, JSON})

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
_SPAN_PATH = re.compile(r"^resourceSpans\[(\d+)\]\.scopeSpans\[(\d+)\]\.spans\[(\d+)\]")


def decode_request(body: bytes, media_type: str) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` body as its OTLP/JSON dict.

    Raises
    ------
    BodyError
        415 for another content type, 400 for a body that does not decode.
    """
    if media_type == PROTOBUF:
        try:
            message = ExportTraceServiceRequest.FromString(body)
        except DecodeError as exc:
            raise BodyError(400, "invalid_protobuf", f"not an ExportTraceServiceRequest: {exc}") from exc
        request = json_format.MessageToDict(message, use_integers_for_enums=True)
        for resource_spans in request.get("resourceSpans", ()):
            for scope_spans in resource_spans.get("scopeSpans", ()):
                for span in scope_spans.get("spans", ()):
                    _ids_to_hex(span)
                    for link in span.get("links", ()):
                        _ids_to_hex(link)
        return request
    if media_type == JSON:
        try:
            request = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise BodyError(400, "invalid_json", f"not JSON: {exc}") from exc
        if not isinstance(request, dict):
            raise BodyError(400, "invalid_body", "an OTLP/JSON export must be a JSON object with resourceSpans")
        return request
    raise BodyError(415, "unsupported_media_type",
                    f"Content-Type {media_type or '(none)'!r} is not supported; use {PROTOBUF} or {JSON}")


def _ids_to_hex(obj: dict[str, Any]) -> None:
    """MessageToDict writes bytes as base64; OTLP/JSON wants trace and span ids as hex."""
    for name in _ID_FIELDS:
        value = obj.get(name)
        if isinstance(value, str):
            obj[name] = base64.b64decode(value).hex()


def count_spans(request: Mapping[str, Any]) -> int:
    """How many spans an OTLP/JSON export carries (malformed parts count as none)."""
    total = 0
    for rs in _as_list(request.get("resourceSpans") or request.get("resource_spans")):
        if isinstance(rs, Mapping):
            for ss in _as_list(rs.get("scopeSpans") or rs.get("scope_spans")):
                if isinstance(ss, Mapping):
                    total += len(_as_list(ss.get("spans")))
    return total


def span_at(request: Mapping[str, Any], field: str | None) -> Any:
    """The span an adapter error's ``field`` points into (``resourceSpans[0].scopeSpans[0].spans[3]...``)."""
    match = _SPAN_PATH.match(field or "")
    if not match:
        return None
    r, s, i = map(int, match.groups())
    try:
        return request["resourceSpans"][r]["scopeSpans"][s]["spans"][i]
    except (KeyError, IndexError, TypeError):
        return None


def encode_response(media_type: str, rejected_spans: int = 0, error_message: str = "") -> bytes:
    """An ``ExportTraceServiceResponse``; ``partial_success`` is set only when something was rejected."""
    response = ExportTraceServiceResponse()
    if rejected_spans or error_message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected_spans, error_message=error_message)
        )
    if media_type == PROTOBUF:
        return response.SerializeToString()
    return orjson.dumps(json_format.MessageToDict(response))


def encode_status(media_type: str, code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` error body (``code`` is a gRPC code), in the request's encoding.

    The message is two fields, encoded by hand so the service needs no extra protobuf package:
    field 1 (``code``, varint) and field 2 (``message``, length-delimited).
    """
    if media_type == PROTOBUF:
        text = message.encode("utf-8")
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
    return orjson.dumps({"code": code, "message": message})


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


#: gRPC status codes for the HTTP statuses the receiver answers with.
GRPC_CODE = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}  # INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED, UNAVAILABLE
