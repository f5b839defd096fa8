"""Prompt and response text never reaches the dead-letter topic, even from bytes that do not parse.

Issue 16, item 4: the four routes that leaked, through ingest and straight to the raw topic.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from spendwatch.config import Settings
from spendwatch.schemas.redact import redact_bytes, scrub_bytes
from spendwatch.streams.pipeline import RawMessage, parse_batch

from ingest_offline import offline_ingest

SECRET = "TOP SECRET PROMPT TEXT"
NDJSON = {"Content-Type": "application/x-ndjson"}


def litellm(call_id: str, **overrides: object) -> dict:
    start = datetime.now(UTC).timestamp() - 60
    payload = {
        "id": f"chatcmpl-{call_id}", "litellm_call_id": call_id, "call_type": "acompletion", "status": "success",
        "custom_llm_provider": "openai", "startTime": start, "endTime": start + 0.5, "model": "gpt-4o-mini",
        "response_cost": 0.0000135,
        "metadata": {"user_api_key_hash": "hash-lt", "usage_object": {"prompt_tokens": 10, "completion_tokens": 20}},
        "messages": [{"role": "user", "content": SECRET}],
        "response": {"choices": [{"message": {"content": SECRET, "role": "assistant"}}]},
        "error_information": {"error_code": "400", "error_class": "BadRequestError",
                              "error_message": f"litellm.BadRequestError: prompt was {SECRET!r}"},
    }
    payload.update(overrides)
    return payload


def with_nan(payload: dict) -> bytes:
    """The payload as a JSON-ish body orjson refuses: the cost is NaN, as Python's json.dumps writes it."""
    return orjson.dumps({**payload, "response_cost": "__NAN__"}).replace(b'"__NAN__"', b"NaN")


def no_text(originals: list[bytes]) -> None:
    assert originals
    for original in originals:
        assert SECRET.encode() not in original and b"SECRET" not in original, original


async def test_ingest_keeps_no_text_from_cut_lines_nan_bodies_or_error_messages() -> None:
    cut = orjson.dumps(litellm("cut"))
    cut = cut[: cut.index(SECRET.encode()) + 6]  # the line ends inside the content string
    nan_prompt = with_nan({"model": "gpt-4o", "prompt": [SECRET, {"text": SECRET}], "usage": {"total_tokens": 3}})
    unattributed = litellm("no-key", metadata={"usage_object": {"prompt_tokens": 1, "completion_tokens": 1}})
    async with offline_ingest() as ingest:
        body = b"\n".join([cut, nan_prompt, orjson.dumps(unattributed), with_nan(litellm("nan"))])
        status, answer = await ingest.post(body, NDJSON)
        assert (status, answer["rejected"]) == (400, 4)
        letters = ingest.dead_letters()
        assert len(letters) == 4
        no_text([letter.original for letter in letters])
        assert all(SECRET not in letter.reason for letter in letters)
        assert b'"model":"gpt-4o-mini"' in letters[2].original  # what is not text is kept to debug with


def test_a_nan_litellm_payload_produced_straight_to_raw_is_dead_lettered_redacted() -> None:
    messages = [RawMessage(with_nan(litellm("nan")), "raw", 0, 7),
                RawMessage(with_nan(litellm("cut"))[:-40], "raw", 0, 8),
                RawMessage(orjson.dumps([litellm("batch"), {"prompt": SECRET}]), "raw", 0, 9)]
    parsed = parse_batch(messages, Settings().adapters)
    assert {letter.source_offset for letter in parsed.dead_letters} == {7, 8, 9}
    no_text([letter.original for letter in parsed.dead_letters])
    assert b"NaN" in parsed.dead_letters[0].original  # the reason it failed is still there to see
    raw_topic_json = [orjson.loads(letter.model_dump_json()) for letter in parsed.dead_letters]
    no_text([base64.b64decode(d["original_b64"]) for d in raw_topic_json])


@pytest.mark.parametrize("raw", [
    b'{"messages": [{"content": "' + SECRET.encode() + b'"}], "x": NaN}',
    b'{"content":"' + SECRET.encode()[:5],
    b'{"prompt": {"nested": ["' + SECRET.encode() + b'", {"a": "]}"}',
    b'{"con\\u0074ent": "' + SECRET.encode() + b'", "x": ,}',
    b'{"key": "gen_ai.input.messages", "value": {"stringValue": "' + SECRET.encode() + b'"}}, NaN',
    b'\xff\xfe{"text": "' + SECRET.encode() + b'"',
])
def test_scrubbing_bytes_that_do_not_parse(raw: bytes) -> None:
    no_text([scrub_bytes(raw), redact_bytes(raw)[0]])
