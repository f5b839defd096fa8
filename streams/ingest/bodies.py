"""Request bodies: size limits, gzip, and splitting one body into records.

``POST /v1/events`` takes what LiteLLM's ``generic_api`` callback sends in each of its
``log_format`` settings, and what any other gateway is likely to send:

``single``
    one JSON object;
``json_array``
    a JSON array of objects;
``ndjson``
    one JSON value per line (LiteLLM sends it with ``Content-Type: application/json``,
    so the body is sniffed, never trusted to its header).

Each element or line is a *record*; a record that is not JSON becomes a per-record
error while the records around it are kept.

>>> [r.value for r in split_records(b'{"a": 1}')]
[{'a': 1}]
>>> [r.value for r in split_records(b'[{"a": 1}, {"a": 2}]')]
[{'a': 1}, {'a': 2}]
>>> records = split_records(b'{"a": 1}\\nnot json\\n\\n{"a": 3}\\n')
>>> [(r.line, r.value, r.error is not None) for r in records]
[(1, {'a': 1}, False), (2, None, True), (4, {'a': 3}, False)]
>>> records[1].error.error_type
'invalid_json'
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.redact import REDACTED, redact


class BodyError(Exception):
    """The body as a whole is unusable; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(f"{status} {error}: {detail}")


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a request body.

    ``index`` counts records from 0 in body order; ``line`` is the 1-based NDJSON line
    (``None`` for a single object or an array element). Exactly one of ``value`` and
    ``error`` is set.
    """

    index: int
    raw: bytes
    value: Any = None
    error: ParseError | None = None
    line: int | None = None


#: Content types ``/v1/events`` accepts (parameters such as charset are ignored).
EVENT_CONTENT_TYPES = frozenset({
    "application/json", "application/x-ndjson", "application/ndjson", "application/jsonl",
    "application/x-jsonlines", "application/jsonlines", "text/plain", "application/octet-stream", "",
})


def check_content_length(content_length: int | None, max_body_bytes: int) -> None:
    if content_length is not None and content_length > max_body_bytes:
        raise BodyError(413, "body_too_large", f"Content-Length {content_length} exceeds the limit of {max_body_bytes} bytes")


def decode_content(body: bytes, content_encoding: str | None, max_decompressed_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip or identity), refusing to inflate past the limit.

    >>> import gzip
    >>> decode_content(gzip.compress(b'{"a": 1}'), "gzip", 1024)
    b'{"a": 1}'
    >>> try:
    ...     decode_content(gzip.compress(b'x' * 5000), "gzip", 1024)
    ... except BodyError as exc:
    ...     print(exc)
    413 body_too_large: gzip body inflates past the limit of 1024 bytes
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > max_decompressed_bytes:
            raise BodyError(413, "body_too_large", f"body exceeds the limit of {max_decompressed_bytes} bytes")
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise BodyError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    data = body
    try:
        # Several gzip members may be concatenated (RFC 1952); inflate each in turn.
        while data:
            out += inflater.decompress(data, max_decompressed_bytes + 1 - len(out))
            if len(out) > max_decompressed_bytes:
                raise BodyError(413, "body_too_large", f"gzip body inflates past the limit of {max_decompressed_bytes} bytes")
            if inflater.unconsumed_tail:
                data = inflater.unconsumed_tail
                continue
            if not inflater.eof:
                raise BodyError(400, "invalid_gzip", "gzip body is truncated")
            data = inflater.unused_data.lstrip(b"\x00")
            if data:
                inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise BodyError(400, "invalid_gzip", f"body is not valid gzip: {exc}") from exc
    return bytes(out)


def media_type(content_type: str | None) -> str:
    """The bare media type of a ``Content-Type`` header, lower case."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def split_records(body: bytes, max_records: int | None = None) -> list[Record]:
    """Split a body into records: one object, an array's elements, or NDJSON lines.

    Raises
    ------
    BodyError
        400 for an empty body or a JSON document that is neither an object nor an
        array; 413 for more than ``max_records`` records.
    """
    stripped = body.strip()
    if not stripped:
        raise BodyError(400, "empty_body", "the body is empty; send a JSON object, a JSON array or NDJSON")
    try:
        document = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        records = _ndjson_records(body)
    else:
        if isinstance(document, dict):
            records = [Record(index=0, raw=stripped, value=document)]
        elif isinstance(document, list):
            records = [
                Record(index=i, raw=b"", value=element) if isinstance(element, dict)
                else Record(index=i, raw=_non_object_original(element),
                            error=ParseError("validation", f"array element is a {_json_type(element)}, not an object",
                                             field=f"[{i}]"))
                for i, element in enumerate(document)
            ]
            if not records:
                raise BodyError(400, "empty_body", "the JSON array is empty")
        else:
            raise BodyError(400, "invalid_body", f"the body is a JSON {_json_type(document)}; send an object, an array or NDJSON")
    if max_records is not None and len(records) > max_records:
        raise BodyError(413, "too_many_records", f"{len(records)} records exceed the limit of {max_records} per request")
    return records


def _non_object_original(element: Any) -> bytes:
    """What a dead letter keeps of an array element that is not an object.

    Nested at most 64 deep (orjson cannot write past 255 levels; a body may nest 1,024), and
    never a bare string, which could be prompt text sent as it is.

    >>> _non_object_original([[[1, "x"]]]), _non_object_original("what is my password")
    (b'[[[1,"x"]]]', b'"[redacted]"')
    >>> b"[redacted]" in _non_object_original(orjson.loads(b"[" * 1000 + b"]" * 1000))
    True
    """
    if isinstance(element, str):
        return orjson.dumps(REDACTED)
    return orjson.dumps(redact(element))


def _ndjson_records(body: bytes) -> list[Record]:
    records: list[Record] = []
    for line_no, line in enumerate(body.split(b"\n"), start=1):
        line = line.strip()
        if not line:
            continue
        index = len(records)
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            error = ParseError("invalid_json", f"line {line_no} is not JSON: {exc}", field=f"line {line_no}")
            records.append(Record(index=index, raw=line, error=error, line=line_no))
            continue
        if not isinstance(value, dict):
            error = ParseError("validation", f"line {line_no} is a JSON {_json_type(value)}, not an object",
                               field=f"line {line_no}")
            records.append(Record(index=index, raw=line, error=error, line=line_no))
            continue
        records.append(Record(index=index, raw=line, value=value, line=line_no))
    return records


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")
