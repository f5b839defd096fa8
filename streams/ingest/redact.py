"""Remove prompt and response text from what a dead letter keeps of a rejected record.

Canonical events carry no text by construction; the only place a prompt could survive
is the *original* of a rejected record, kept in the dead letter for debugging. Gateways
put text under well-known names (LiteLLM's ``messages`` and ``response``, OpenAI's
``choices[].message.content``, the GenAI span attributes ``gen_ai.input.messages``...);
their values are replaced by a placeholder that keeps only their size, so the rest of
the record (usage, metadata, the field that was wrong) stays readable.

>>> redact_value({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "usage": {"prompt_tokens": 3}})
{'model': 'gpt-4o', 'messages': '[redacted array]', 'usage': {'prompt_tokens': 3}}
>>> redact_value({"attributes": [{"key": "gen_ai.prompt", "value": {"stringValue": "hi"}}]})
{'attributes': [{'key': 'gen_ai.prompt', 'value': {'stringValue': '[redacted string]'}}]}
>>> redact_bytes(b'{"content": "my secret", "prompt_tokens": 3, oops')
b'{"content": "[redacted]", "prompt_tokens": 3, oops'
"""

from __future__ import annotations

import re
from typing import Any

import orjson

#: Keys whose values are prompt or response text (or structures holding it), in any payload.
TEXT_KEYS = frozenset({
    "messages", "message", "content", "contents", "text", "prompt", "prompts", "completion", "completions",
    "choices", "response", "responses", "input", "inputs", "output", "outputs", "instructions", "system",
    "system_instructions", "reasoning_content", "thinking_blocks", "arguments", "tool_calls", "function_call",
    "query", "documents", "embeddings", "body", "request_body", "response_body", "proxy_server_request",
    "error_str", "traceback", "exception", "error_information",
})

#: Span-attribute prefixes whose values are prompt or response text (OpenTelemetry GenAI, OpenInference, Traceloop).
TEXT_ATTRIBUTE_PREFIXES = (
    "gen_ai.prompt", "gen_ai.completion", "gen_ai.input.messages", "gen_ai.output.messages",
    "gen_ai.system_instructions", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
    "llm.prompts", "llm.input_messages", "llm.output_messages", "input.value", "output.value",
    "traceloop.entity.input", "traceloop.entity.output",
)


def is_text_attribute(name: str) -> bool:
    """Whether a span attribute or event name carries prompt or response text."""
    return name.startswith(TEXT_ATTRIBUTE_PREFIXES)


def redact_value(value: Any) -> Any:
    """A copy of a parsed JSON value with every text-bearing field replaced by a placeholder."""
    if isinstance(value, dict):
        if isinstance(value.get("key"), str) and "value" in value and is_text_attribute(value["key"]):
            return {**value, "value": _redact_attribute_value(value["value"])}
        return {
            k: (_placeholder(v) if (k in TEXT_KEYS or is_text_attribute(k)) and v not in (None, "", [], {})
                else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    return value


_TEXT_KEY_ALTERNATION = "|".join(sorted(map(re.escape, TEXT_KEYS | set(TEXT_ATTRIBUTE_PREFIXES)), key=len, reverse=True))
_TEXT_STRING = re.compile(rb'("(?:' + _TEXT_KEY_ALTERNATION.encode() + rb')[^"]*"\s*:\s*)"(?:[^"\\]|\\.)*"', re.DOTALL)


def redact_bytes(raw: bytes) -> bytes:
    """Redact a record: exactly when it is JSON, best effort (string values of text keys) when it is not."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _TEXT_STRING.sub(rb'\1"[redacted]"', raw)
    return orjson.dumps(redact_value(value))


def truncate(raw: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, marking the cut."""
    if len(raw) <= limit:
        return raw
    marker = b"...[truncated %d bytes]" % (len(raw) - limit)
    return raw[: max(0, limit - len(marker))] + marker


def _placeholder(value: Any) -> str:
    kind = {dict: "object", list: "array", str: "string"}.get(type(value), "value")
    return f"[redacted {kind}]"


def _redact_attribute_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _placeholder(v) for k, v in value.items()}
    return _placeholder(value)
