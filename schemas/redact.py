"""Strip prompt and response text from a message before it is stored anywhere (dead letters).

Adapters never read text fields; but a message that fails to parse is kept whole in a dead
letter, so the text is removed from it first.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

#: JSON keys whose values are prompt or completion text (LiteLLM, OpenAI, OpenRouter, Anthropic).
TEXT_KEYS = frozenset({
    "messages", "response", "prompt", "prompts", "input", "output", "choices", "completion", "content",
    "system", "system_instructions", "instructions", "text", "delta", "contents", "candidates",
    "reasoning_content", "thinking_blocks", "tool_calls", "function_call", "arguments", "error_str", "traceback",
})
#: OTel attribute names carrying prompt or completion text.
TEXT_ATTRIBUTE = re.compile(
    r"^(gen_ai\.(prompt|completion|input\.messages|output\.messages|system_instructions|tool\.call\.(arguments|result))"
    r"|llm\.(prompts|completions|input_messages|output_messages)|input\.value|output\.value"
    r"|metadata\.(messages|response))",
)
REDACTED = "[redacted]"
MAX_STORED_BYTES = 256 * 1024


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of a decoded JSON value with text fields replaced by ``"[redacted]"``.

    >>> redact({"model": "m", "messages": [{"content": "secret"}], "attributes": [
    ...     {"key": "gen_ai.prompt", "value": {"stringValue": "secret"}}]})
    {'model': 'm', 'messages': '[redacted]', 'attributes': [{'key': 'gen_ai.prompt', 'value': {'stringValue': '[redacted]'}}]}
    """
    if depth > 64:
        return REDACTED
    if isinstance(value, dict):
        key = value.get("key")
        if isinstance(key, str) and "value" in value and TEXT_ATTRIBUTE.match(key):
            return {**value, "value": {"stringValue": REDACTED}}
        return {k: (REDACTED if k in TEXT_KEYS else redact(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    return value


def redact_bytes(raw: bytes) -> tuple[bytes, bool]:
    """JSON bytes with text fields redacted (non-JSON is kept), capped at :data:`MAX_STORED_BYTES`.

    Returns the bytes and whether they were truncated.
    """
    try:
        raw = orjson.dumps(redact(orjson.loads(raw)))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError, RecursionError):
        pass
    if len(raw) > MAX_STORED_BYTES:
        return raw[:MAX_STORED_BYTES], True
    return raw, False
