"""What a dead letter keeps of a rejected record: no prompt or response text, and not too much.

Canonical events carry no text by construction; the only place a prompt could survive is
the *original* of a rejected record. Parsed records are redacted field by field with
:func:`spendwatch.schemas.redact.redact` (the one list of text-bearing keys and span
attributes). A record that is not even JSON cannot be walked, so the string values that
follow a text-bearing key are blanked by pattern, best effort, before anything is kept.
Redaction always happens *before* truncation: a cut-off JSON document no longer parses.

>>> redact_record({"model": "gpt-4o", "messages": [{"content": "hi"}]}, b"")
b'{"model":"gpt-4o","messages":"[redacted]"}'
>>> redact_record(None, b'{"content": "my secret", "prompt_tokens": 3, oops')
b'{"content": "[redacted]", "prompt_tokens": 3, oops'
>>> truncate(b"x" * 100, 40)
b'xxxxxxxxxxxxxxxxx...[truncated 60 bytes]'
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from spendwatch.schemas.redact import REDACTED, TEXT_KEYS, redact

_TEXT_KEY = "|".join(sorted(map(re.escape, TEXT_KEYS), key=len, reverse=True))
#: ``"<text key>": "<string>"`` in a document that is not valid JSON.
_TEXT_STRING = re.compile(rb'("(?:' + _TEXT_KEY.encode() + rb')"\s*:\s*)"(?:[^"\\]|\\.)*"', re.DOTALL)
#: ``{"key": "gen_ai.prompt...", "value": {"stringValue": "<string>"}}`` in the same.
_TEXT_ATTRIBUTE = re.compile(
    rb'("key"\s*:\s*"(?:gen_ai\.(?:prompt|completion|input\.messages|output\.messages|system_instructions)'
    rb'|llm\.(?:prompts|completions|input_messages|output_messages)|input\.value|output\.value)[^"]*"\s*,\s*'
    rb'"value"\s*:\s*\{\s*"string_?[vV]alue"\s*:\s*)"(?:[^"\\]|\\.)*"', re.DOTALL)


def redact_record(value: Any, raw: bytes) -> bytes:
    """The bytes to keep for a rejected record: its parsed ``value`` redacted, else ``raw`` scrubbed."""
    if value is not None:
        return orjson.dumps(redact(value))
    try:
        return orjson.dumps(redact(orjson.loads(raw)))
    except orjson.JSONDecodeError:
        scrubbed = _TEXT_STRING.sub(rb'\1"' + REDACTED.encode() + rb'"', raw)
        return _TEXT_ATTRIBUTE.sub(rb'\1"' + REDACTED.encode() + rb'"', scrubbed)


def truncate(raw: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, marking the cut."""
    if len(raw) <= limit:
        return raw
    marker = b"...[truncated %d bytes]" % (len(raw) - limit)
    return raw[: max(0, limit - len(marker))] + marker
