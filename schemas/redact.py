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


#: Keys whose string values a dead letter keeps: identifiers, names, times, codes and the numeric fields a
#: sender may have written as strings. Every other string is blanked: text under a key nobody listed
#: (a gateway's own field, a key misspelt) never survives.
KEPT_STRING_KEYS = frozenset({
    "event_id", "id", "litellm_call_id", "call_id", "trace_id", "session_id", "outcome_id", "request_id",
    "model", "model_group", "model_id", "model_map_key", "litellm_model_name", "provider", "custom_llm_provider",
    "api_base", "gateway", "status", "call_type", "api_key_hash", "api_key_alias", "user_api_key_hash",
    "user_api_key_alias", "user_api_key_user_id", "user_api_key_team_id", "user_api_key_org_id",
    "user_api_key_project_id", "user_api_key_end_user_id", "team", "team_id", "user", "end_user", "org",
    "project", "tags", "request_tags", "event_time", "startTime", "endTime", "completionStartTime",
    "error_class", "error_code", "error_type", "cost_usd", "response_cost", "cost", "cost_source", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "prompt_tokens",
    "completion_tokens", "total_tokens", "latency_ms", "kind", "key", "name", "traceId", "spanId",
    "parentSpanId", "startTimeUnixNano", "endTimeUnixNano", "intValue", "doubleValue", "specversion", "type",
    "source", "time", "subject", "datacontenttype", "role", "finish_reason",
})
#: OTel attributes whose string values a dead letter keeps (who pays, which model); others are blanked.
KEPT_ATTRIBUTE = re.compile(
    r"^(gen_ai\.(request\.model|response\.model|system|provider\.name|operation\.name|conversation\.id|response\.id"
    r"|usage\..*|cost\..*)|spendwatch\..*|metadata\.(user_api_key_\w+|tags|session_id)|llm\.(model_name|provider|system"
    r"|usage\..*)|(user|enduser|team|org|project|session|service|api_key)\.(id|name|hash))$"
)


def redact(value: Any, depth: int = 0, keep_strings: bool = False) -> Any:
    """A copy of a decoded JSON value with text replaced by ``"[redacted]"``.

    Text keys lose their whole value; any other string is kept only under a key of
    :data:`KEPT_STRING_KEYS` (or as an OTel attribute :data:`KEPT_ATTRIBUTE` names).

    >>> redact({"model": "m", "messages": [{"content": "secret"}], "attributes": [
    ...     {"key": "gen_ai.prompt", "value": {"stringValue": "secret"}},
    ...     {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}], "gen_ai.completion": "secret",
    ...     "my_note": "secret", "usage": {"prompt_tokens": "12"}})  # doctest: +NORMALIZE_WHITESPACE
    {'model': 'm', 'messages': '[redacted]', 'attributes': [{'key': 'gen_ai.prompt', 'value': {'stringValue': '[redacted]'}},
     {'key': 'gen_ai.request.model', 'value': {'stringValue': 'gpt-4o'}}], 'gen_ai.completion': '[redacted]',
     'my_note': '[redacted]', 'usage': {'prompt_tokens': '12'}}
    """
    if depth > 64:
        return REDACTED
    if isinstance(value, dict):
        key = value.get("key")
        if isinstance(key, str) and "value" in value:  # an OTel attribute
            if TEXT_ATTRIBUTE.match(key):
                return {**value, "value": {"stringValue": REDACTED}}
            if KEPT_ATTRIBUTE.match(key):
                return {k: redact(v, depth + 1, keep_strings=True) for k, v in value.items()}
        return {k: (REDACTED if isinstance(k, str) and is_text_key(k)
                    else redact(v, depth + 1, keep_strings=keep_strings or (isinstance(k, str) and k in KEPT_STRING_KEYS)))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, depth + 1, keep_strings) for v in value]
    if isinstance(value, str) and not keep_strings:
        return REDACTED
    return value


_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*"', re.DOTALL)  # a JSON string's body and its closing quote
_COLON = re.compile(rb"[ \t\r\n]*:[ \t\r\n]*")
_STRUCTURE = re.compile(rb'["\[\]{}]')
_WORD = re.compile(rb"[A-Za-z_\x80-\xff]+")
_LITERALS = frozenset({b"true", b"false", b"null", b"NaN", b"Infinity"})
_REDACTED_JSON = b'"' + REDACTED.encode() + b'"'

#: Keys whose string values are kept in bytes that do not parse (the same as in parsed ones).
KEPT_IN_UNPARSED = KEPT_STRING_KEYS


def scrub_bytes(raw: bytes) -> bytes:
    r"""Text blanked in bytes that do not parse: cut off, NaN, stray commas, a byte gone, not UTF-8.

    Keys are kept, and the string values of :data:`KEPT_IN_UNPARSED` keys (ids, model, times...);
    the value of a text key (a string, array or object, even one cut off by the end of the bytes)
    becomes ``"[redacted]"``, and so does every other string. Words outside strings other than
    JSON's literals become ``*``: when a quote is missing the scan is out of step, and the text
    it then sees between strings is blanked too.

    >>> scrub_bytes(b'{"model": "m", "response_cost": NaN, "prompt": ["a secret", {"x": 1}], "n": 3}')
    b'{"model": "m", "response_cost": NaN, "prompt": "[redacted]", "n": 3}'
    >>> scrub_bytes(b'{"model":"m","messages":[{"role":"user","content":"my secret that was cu')
    b'{"model":"m","messages":"[redacted]"'
    >>> scrub_bytes(b'{"error_information": {"error_code": "400", "error_message": "bad: my secret"}, oops')
    b'{"error_information": {"error_code": "400", "error_message": "[redacted]"}, *'
    >>> scrub_bytes(b'{"tag": "say \\"content\\": no", "key": "gen_ai.prompt", "value": {"stringValue": "secret')
    b'{"tag": "[redacted]", "key": "gen_ai.prompt", "value": {"stringValue": "[redacted]"'
    >>> scrub_bytes(b'{\x00event_id":"e0","messages":"my secret"}')  # a quote gone: out of step
    b'{\x00*"[redacted]"*0"[redacted]"*"[redacted]"* *"[redacted]"'
    """
    out: list[bytes] = []
    kept_to = pos = 0
    find, size = raw.find, len(raw)
    while (quote := find(b'"', pos)) >= 0:
        out += (raw[kept_to:pos], _blank_words(raw[pos:quote]))
        kept_to = pos = quote
        string = _STRING_REST.match(raw, quote + 1)
        if string is None:  # a string cut by the end of the bytes
            out.append(_REDACTED_JSON)
            return b"".join(out)
        pos = string.end()
        colon = _COLON.match(raw, pos)
        if colon is None:  # a string value no kept key announced
            out.append(_REDACTED_JSON)
            kept_to = pos
            continue
        key = _key_text(raw[quote + 1:pos - 1])
        value_at = colon.end()
        out.append(raw[kept_to:value_at])
        kept_to = pos = value_at
        if is_text_key(key):
            end = _value_end(raw, value_at, size)
            if end is not None:
                out.append(_REDACTED_JSON)
                kept_to = pos = end
        elif key in KEPT_IN_UNPARSED and raw[value_at:value_at + 1] == b'"':
            value = _STRING_REST.match(raw, value_at + 1)
            if value is not None:
                out.append(raw[value_at:value.end()])
                kept_to = pos = value.end()
    out.append(_blank_words(raw[kept_to:]))
    return b"".join(out)


def _blank_words(segment: bytes) -> bytes:
    """Outside strings only JSON's literals are words; any other is text seen out of step."""
    if not _WORD.search(segment):
        return segment
    return _WORD.sub(lambda m: m.group() if m.group() in _LITERALS else b"*", segment)


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
