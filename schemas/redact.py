"""Strip prompt and response text from a message before it is stored anywhere (dead letters).

Adapters never read text fields; but a message that fails to parse is kept whole in a dead
letter, so the text is removed from it first.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

#: JSON keys whose values are prompt or completion text (LiteLLM, OpenAI, OpenRouter, Anthropic), or may quote
#: it (error messages and tracebacks often repeat the prompt).
TEXT_KEYS = frozenset({
    "messages", "message", "response", "prompt", "prompts", "input", "output", "choices", "completion", "content",
    "system", "system_instructions", "instructions", "text", "delta", "contents", "candidates",
    "reasoning_content", "thinking_blocks", "tool_calls", "function_call", "arguments", "tools", "functions",
    "error_str", "error_message", "exception", "traceback", "stack_trace", "original_response", "raw_request",
    "raw_response", "guardrail_response",
})
#: OTel attribute names carrying prompt or completion text.
TEXT_ATTRIBUTE = re.compile(
    r"^(gen_ai\.(prompt|completion|input\.messages|output\.messages|system_instructions|tool\.call\.(arguments|result))"
    r"|llm\.(prompts|completions|input_messages|output_messages)|input\.value|output\.value"
    r"|metadata\.(messages|response)|exception\.(message|stacktrace))",
)
REDACTED = "[redacted]"
MAX_STORED_BYTES = 256 * 1024


def is_text_key(key: str) -> bool:
    """Whether a JSON key (or a flattened OTel attribute name) holds text to redact."""
    return key in TEXT_KEYS or TEXT_ATTRIBUTE.match(key) is not None


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of a decoded JSON value with text fields replaced by ``"[redacted]"``.

    >>> redact({"model": "m", "messages": [{"content": "secret"}], "attributes": [
    ...     {"key": "gen_ai.prompt", "value": {"stringValue": "secret"}}], "gen_ai.completion": "secret"})
    {'model': 'm', 'messages': '[redacted]', 'attributes': [{'key': 'gen_ai.prompt', 'value': {'stringValue': '[redacted]'}}], 'gen_ai.completion': '[redacted]'}
    """
    if depth > 64:
        return REDACTED
    if isinstance(value, dict):
        key = value.get("key")
        if isinstance(key, str) and "value" in value and TEXT_ATTRIBUTE.match(key):
            return {**value, "value": {"stringValue": REDACTED}}
        return {k: (REDACTED if isinstance(k, str) and is_text_key(k) else redact(v, depth + 1))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    return value


_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*"', re.DOTALL)  # a JSON string's body and its closing quote
_COLON = re.compile(rb"[ \t\r\n]*:[ \t\r\n]*")
_STRUCTURE = re.compile(rb'["\[\]{}]')
_REDACTED_JSON = b'"' + REDACTED.encode() + b'"'


def scrub_bytes(raw: bytes) -> bytes:
    r"""Text fields blanked in bytes that may not parse: cut off, NaN, stray commas, not UTF-8.

    Every ``"<text key>": <value>`` (and the ``value`` of an OTel ``{"key": "gen_ai.prompt...",
    "value": ...}`` attribute) has its value -- a string, array or object, even one cut off by
    the end of the bytes -- replaced by ``"[redacted]"``. Strings are followed from their
    opening quote, so a key-like text inside a string value is never mistaken for a key.

    >>> scrub_bytes(b'{"model": "m", "response_cost": NaN, "prompt": ["a secret", {"x": 1}], "n": 3}')
    b'{"model": "m", "response_cost": NaN, "prompt": "[redacted]", "n": 3}'
    >>> scrub_bytes(b'{"model":"m","messages":[{"role":"user","content":"my secret that was cu')
    b'{"model":"m","messages":"[redacted]"'
    >>> scrub_bytes(b'{"error_information": {"error_code": "400", "error_message": "bad: my secret"}, oops')
    b'{"error_information": {"error_code": "400", "error_message": "[redacted]"}, oops'
    >>> scrub_bytes(b'{"tag": "say \\"content\\": no", "key": "gen_ai.prompt", "value": {"stringValue": "secret')
    b'{"tag": "say \\"content\\": no", "key": "gen_ai.prompt", "value": "[redacted]"'
    """
    out: list[bytes] = []
    kept_to = pos = 0
    attribute_value_next = False  # after "key": "<text attribute>": its "value" is text
    find, size = raw.find, len(raw)
    while (quote := find(b'"', pos)) >= 0:
        string = _STRING_REST.match(raw, quote + 1)
        if string is None:  # a string cut by the end of the bytes, not under a text key
            break
        pos = string.end()
        colon = _COLON.match(raw, pos)
        if colon is None:
            continue  # a string value, not a key
        key = _key_text(raw[quote + 1:pos - 1])
        value_at = colon.end()
        if is_text_key(key) or (attribute_value_next and key == "value"):
            attribute_value_next = False
            end = _value_end(raw, value_at, size)
            if end is None:  # a number, true, NaN...: not text
                pos = value_at
                continue
            out += (raw[kept_to:value_at], _REDACTED_JSON)
            kept_to = pos = end
        else:
            if key == "key":
                value = _STRING_REST.match(raw, value_at + 1) if raw[value_at:value_at + 1] == b'"' else None
                attribute_value_next = value is not None and bool(TEXT_ATTRIBUTE.match(
                    _key_text(raw[value_at + 1:value.end() - 1])))
            pos = value_at
    out.append(raw[kept_to:])
    return b"".join(out)


def _key_text(key: bytes) -> str:
    if b"\\" in key:
        try:
            return orjson.loads(b'"' + key + b'"')
        except orjson.JSONDecodeError:
            pass
    return key.decode("utf-8", "replace")


def _value_end(raw: bytes, at: int, size: int) -> int | None:
    """Where the string, array or object starting at ``at`` ends (``size`` if cut off); None for a scalar."""
    first = raw[at:at + 1]
    if first == b'"':
        string = _STRING_REST.match(raw, at + 1)
        return string.end() if string else size
    if first not in (b"[", b"{"):
        return None
    depth, pos = 0, at
    while (token := _STRUCTURE.search(raw, pos)) is not None:
        char = token.group()
        if char == b'"':
            string = _STRING_REST.match(raw, token.end())
            if string is None:
                return size
            pos = string.end()
            continue
        depth += 1 if char in b"[{" else -1
        pos = token.end()
        if depth == 0:
            return pos
    return size


def redact_bytes(raw: bytes) -> tuple[bytes, bool]:
    """Bytes with text fields redacted: structurally when they are JSON, else by :func:`scrub_bytes`;
    capped at :data:`MAX_STORED_BYTES`.

    Returns the bytes and whether they were truncated.
    """
    try:
        raw = orjson.dumps(redact(orjson.loads(raw)))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError, RecursionError):
        raw = scrub_bytes(raw)
    if len(raw) > MAX_STORED_BYTES:
        return raw[:MAX_STORED_BYTES], True
    return raw, False
