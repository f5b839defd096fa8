"""What a dead letter keeps of a rejected record: no prompt or response text, and not too much.

Canonical events carry no text by construction; the only place a prompt could survive is
the *original* of a rejected record. Parsed records are redacted field by field with
:func:`spendwatch.schemas.redact.redact` (the one list of text-bearing keys and span
attributes). A record that is not JSON (cut off, a NaN, a stray comma) cannot be walked, so
:func:`spendwatch.schemas.redact.scrub_bytes` blanks the value after every text-bearing key in
its bytes (cut-off strings and arrays included) and every string it cannot tell is an id, a name or a
time. Redaction always happens *before* truncation:
a cut-off JSON document no longer parses.

>>> redact_record({"model": "gpt-4o", "messages": [{"content": "hi"}]}, b"")
b'{"model":"gpt-4o","messages":"[redacted]"}'
>>> redact_record(None, b'{"content": "my secret", "prompt_tokens": 3, oops')
b'{"content": "[redacted]", "prompt_tokens": 3, *'
>>> redact_record(None, b'{"model": "m", "messages": [{"role": "user", "content": "my secr')
b'{"model": "m", "messages": "[redacted]"'
>>> truncate(b"x" * 100, 40)
b'xxxxxxxxxxxxxxxxx...[truncated 60 bytes]'
"""

from __future__ import annotations

from typing import Any

import orjson

from spendwatch.schemas.redact import redact, scrub_bytes


def redact_record(value: Any, raw: bytes) -> bytes:
    """The bytes to keep for a rejected record: its parsed ``value`` redacted, else ``raw`` scrubbed."""
    if value is not None:
        return orjson.dumps(redact(value))
    try:
        return orjson.dumps(redact(orjson.loads(raw)))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return scrub_bytes(raw)


def truncate(raw: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, marking the cut."""
    if len(raw) <= limit:
        return raw
    marker = b"...[truncated %d bytes]" % (len(raw) - limit)
    return raw[: max(0, limit - len(marker))] + marker
