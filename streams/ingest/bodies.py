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

import re
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.redact import redact


class BodyError(Exception):
    """The body as a whole is unusable; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(f"{status} {error}: {detail}")


class InflightBytes:
    """The body bytes held by every request being handled, against one budget.

    Each request takes a :class:`Lease`, charges it as it reads and inflates its body, and gives
    everything back when it has answered. A charge that would go over the budget fails the
    request with 503 (retry): memory stays bounded whatever the concurrency.

    >>> budget = InflightBytes(100)
    >>> with budget.lease() as first:
    ...     first.charge(70)
    ...     try:
    ...         with budget.lease() as second:
    ...             second.charge(40)
    ...     except BodyError as exc:
    ...         print(exc.status, exc.error, budget.used)
    503 ingest_busy 70
    >>> budget.used
    0
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def lease(self) -> Lease:
        return Lease(self)


class Lease:
    """One request's share of :class:`InflightBytes`; a context manager that gives it all back on exit."""

    def __init__(self, budget: InflightBytes) -> None:
        self.budget = budget
        self.held = 0

    def charge(self, n: int) -> None:
        budget = self.budget
        if self.held + n > budget.limit:
            raise BodyError(413, "body_too_large",
                            f"this request would hold more than the {budget.limit:,} bytes all requests may hold at once "
                            "(ingest.max_inflight_body_bytes; the estimate includes parsing it): send smaller batches")
        if budget.used + n > budget.limit:
            raise BodyError(503, "ingest_busy",
                            f"requests in progress hold {budget.used:,} body bytes; this one would pass the limit of "
                            f"{budget.limit:,} (ingest.max_inflight_body_bytes): retry")
        budget.used += n
        self.held += n
        budget.peak = max(budget.peak, budget.used)

    def release(self, n: int) -> None:
        n = min(n, self.held)
        self.held -= n
        self.budget.used -= n

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release(self.held)


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


#: Inflated bytes charged to the in-flight budget at a time.
INFLATE_STEP = 1_048_576


def decode_content(body: bytes, content_encoding: str | None, max_decompressed_bytes: int,
                   lease: Lease | None = None) -> bytes:
    """Undo ``Content-Encoding`` (gzip or identity), refusing to inflate past the limit.

    With a ``lease``, the inflated bytes are charged to it step by step (503 once the in-flight
    budget is spent), so a gzip bomb is stopped before it is inflated, not after.

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
        while True:
            step = max_decompressed_bytes + 1 - len(out)
            if lease is not None:
                step = min(step, INFLATE_STEP)
                lease.charge(step)
            chunk = inflater.decompress(data, step)
            out += chunk
            if lease is not None:
                lease.release(step - len(chunk))
            if len(out) > max_decompressed_bytes:
                raise BodyError(413, "body_too_large", f"gzip body inflates past the limit of {max_decompressed_bytes} bytes")
            data = inflater.unconsumed_tail
            if inflater.eof:
                data = inflater.unused_data.lstrip(b"\x00")
                if not data:
                    break
                inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            elif not data and len(chunk) < step:  # all input read, no more output: the stream stops short
                raise BodyError(400, "invalid_gzip", "gzip body is truncated")
    except zlib.error as exc:
        raise BodyError(400, "invalid_gzip", f"body is not valid gzip: {exc}") from exc
    return bytes(out)


def media_type(content_type: str | None) -> str:
    """The bare media type of a ``Content-Type`` header, lower case."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def split_records(body: bytes, max_records: int | None = None) -> list[Record]:
    """Split a body into records: one object, an array's elements, or NDJSON lines.

    Nothing is copied that is not kept: lines are parsed in place, and a line that is not
    JSON keeps at most :data:`MAX_INVALID_LINE_BYTES` of itself for its dead letter (the text
    scrubber handles a cut-off line).

    Raises
    ------
    BodyError
        400 for an empty body or a JSON document that is neither an object nor an
        array; 413 for more than ``max_records`` records.
    """
    if not body or body.isspace():
        raise BodyError(400, "empty_body", "the body is empty; send a JSON object, a JSON array or NDJSON")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        if max_records is not None:
            _check_line_count(body, max_records)
        records = _ndjson_records(body)
    else:
        if isinstance(document, dict):
            records = [Record(index=0, raw=b"", value=document)]
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


def parse_cost_estimate(body: bytes) -> int:
    """Bytes that parsing ``body`` may allocate, estimated before parsing: its strings (at most its
    size) and 100 per JSON value, counted from its ``,``, ``[`` and ``{`` bytes.

    Measured: 55 MB for a 17 MB array of 10,000 LiteLLM payloads (estimate 71 MB); 960 MB for a
    40 MB array of ``{"a":1}`` (estimate 1,040 MB).
    """
    return len(body) + 100 * (body.count(b",") + body.count(b"[") + body.count(b"{"))


#: Most bytes of a line that is not JSON kept for its dead letter.
MAX_INVALID_LINE_BYTES = 1_048_576
_LINE = re.compile(rb"[^\S\n]*(\S[^\n]*)")  # a non-blank line, without its leading blanks
_RECORD_LINE = re.compile(rb"^[ \t\r\f\v]*[^\s]", re.MULTILINE)


def _check_line_count(body: bytes, max_records: int) -> None:
    """413 before any line is parsed when an NDJSON body has more than ``max_records`` non-blank lines."""
    if body.count(b"\n") < max_records:
        return
    lines = 0
    for lines, _ in enumerate(_RECORD_LINE.finditer(body), start=1):
        if lines > max_records:
            raise BodyError(413, "too_many_records", f"more than {max_records} records exceed the limit per request")


def _non_object_original(element: Any) -> bytes:
    """What a dead letter keeps of an array element or line that is not an object.

    Nested at most 64 deep (orjson cannot write past 255 levels; a body may nest 1,024), and
    never a bare string, which could be prompt text sent as it is.

    >>> _non_object_original([[[1, "x"]]]), _non_object_original("what is my password")
    (b'[[[1,"[redacted]"]]]', b'"[redacted]"')
    >>> b"[redacted]" in _non_object_original(orjson.loads(b"[" * 1000 + b"]" * 1000))
    True
    """
    return orjson.dumps(redact(element))


def _ndjson_records(body: bytes) -> list[Record]:
    records: list[Record] = []
    view = memoryview(body)
    line_no, counted_to = 1, 0
    for match in _LINE.finditer(body):
        start, end = match.span(1)
        line_no += body.count(b"\n", counted_to, start)
        counted_to = start
        index = len(records)
        try:
            value = orjson.loads(view[start:end])
        except orjson.JSONDecodeError as exc:
            error = ParseError("invalid_json", f"line {line_no} is not JSON: {exc}", field=f"line {line_no}")
            raw = bytes(view[start:min(end, start + MAX_INVALID_LINE_BYTES)])
            records.append(Record(index=index, raw=raw, error=error, line=line_no))
            continue
        if not isinstance(value, dict):
            error = ParseError("validation", f"line {line_no} is a JSON {_json_type(value)}, not an object",
                               field=f"line {line_no}")
            records.append(Record(index=index, raw=_non_object_original(value), error=error, line=line_no))
            continue
        records.append(Record(index=index, raw=b"", value=value, line=line_no))
    return records


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")
