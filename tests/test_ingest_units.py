"""Ingest pieces that need no broker: tokens, configuration, body splitting, redaction, OTLP encoding."""

from __future__ import annotations

import gzip

import orjson
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import ValidationError

from spendwatch.config import ConfigError, load_settings
from spendwatch.streams.ingest import otlp
from spendwatch.streams.ingest.auth import GatewayTokens, TokenConfigError
from spendwatch.streams.ingest.bodies import BodyError, decode_content, split_records
from spendwatch.streams.ingest.config import IngestConfig
from spendwatch.streams.ingest.redact import redact_record


def test_tokens_come_from_the_environment_by_name():
    config = IngestConfig(token_env_vars={"openrouter": "OPENROUTER_BROADCAST_TOKEN"})
    env = {"SPENDWATCH_INGEST_TOKENS": "litellm-eu=tok-eu-12345678, litellm-us=tok-us-12345678==",
           "OPENROUTER_BROADCAST_TOKEN": "tok-or-12345678"}
    tokens = GatewayTokens.from_environment(config, env)
    assert tokens.gateways == {"litellm-eu", "litellm-us", "openrouter"}
    assert tokens.gateway_for("Bearer tok-us-12345678==") == "litellm-us", "a token may contain '='"
    assert tokens.gateway_for("bearer   tok-or-12345678  ") == "openrouter"
    assert tokens.gateway_for("Bearer tok-eu-1234567") is None
    assert tokens.gateway_for("Basic tok-eu-12345678") is None


@pytest.mark.parametrize(("env", "message"), [
    ({"SPENDWATCH_INGEST_TOKENS": "litellm"}, "entry 1 is not gateway=token"),
    ({"SPENDWATCH_INGEST_TOKENS": "a=tok-12345678,a=tok-87654321"}, "listed twice"),
    ({"SPENDWATCH_INGEST_TOKENS": "a=tok-12345678,b=tok-12345678"}, "share one token"),
    ({"SPENDWATCH_INGEST_TOKENS": "a=short"}, "shorter than"),
])
def test_bad_token_settings_are_refused_without_echoing_tokens(env, message):
    with pytest.raises(TokenConfigError, match=message) as info:
        GatewayTokens.from_environment(IngestConfig(), env)
    assert "tok-87654321" not in str(info.value) and "short" not in str(info.value).replace("shorter", "")


def test_missing_per_gateway_variable_is_named():
    config = IngestConfig(token_env_vars={"portkey": "PORTKEY_TOKEN"})
    with pytest.raises(TokenConfigError, match="PORTKEY_TOKEN is not set"):
        GatewayTokens.from_environment(config, {})


def test_yaml_refuses_a_token_where_a_variable_name_belongs(tmp_path):
    with pytest.raises(ValidationError, match="NAME of an environment variable"):
        IngestConfig(token_env_vars={"litellm": "sk-live-9f0c2b7e"})
    path = tmp_path / "spendwatch.yaml"
    path.write_text("ingest:\n  token_env_vars:\n    litellm: LITELLM_INGEST_TOKEN\n  max_body_bytes: 2048\n")
    settings = load_settings(path)
    assert settings.ingest.token_env_vars == {"litellm": "LITELLM_INGEST_TOKEN"}
    path.write_text("ingest:\n  tokens: {litellm: abc}\n")
    with pytest.raises(ConfigError, match="tokens"):
        load_settings(path)


def test_split_records_numbers_lines_and_flags_non_objects():
    records = split_records(b'{"a":1}\n\n[1,2]\n"x"\n{"b":2}')
    assert [(r.index, r.line) for r in records] == [(0, 1), (1, 3), (2, 4), (3, 5)]
    assert [r.error.error_type if r.error else None for r in records] == [None, "validation", "validation", None]
    array = split_records(b'[{"a":1}, "s", {"b":2}]')
    assert [r.error is None for r in array] == [True, False, True] and array[1].error.field == "[1]"
    with pytest.raises(BodyError) as info:
        split_records(orjson.dumps([{}] * 4), max_records=3)
    assert info.value.status == 413


def test_gzip_members_are_concatenated_and_truncation_is_caught():
    body = gzip.compress(b'{"a":1}\n') + gzip.compress(b'{"a":2}\n')
    assert decode_content(body, "gzip", 1024) == b'{"a":1}\n{"a":2}\n'
    with pytest.raises(BodyError) as info:
        decode_content(gzip.compress(b'{"a":1}' * 100)[:-12], "gzip", 10_000)
    assert (info.value.status, info.value.error) == (400, "invalid_gzip")


def test_redaction_keeps_structure_and_drops_text():
    payload = {"model": "gpt-4o", "metadata": {"user_api_key_hash": "h"}, "messages": [{"content": "secret"}],
               "response": {"choices": [{"message": {"content": "secret"}}]},
               "attributes": [{"key": "gen_ai.input.messages", "value": {"stringValue": "secret"}},
                              {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}]}
    redacted = redact_record(payload, b"")
    assert b"secret" not in redacted and b'"user_api_key_hash":"h"' in redacted and b"gen_ai.request.model" in redacted
    broken = b'{"messages": [{"role": "user", "content": "secret \\" quoted"}], "usage": {"prompt_tokens": 3}'
    assert b"secret" not in redact_record(None, broken) and b"prompt_tokens" in redact_record(None, broken)
    span = b'{"attributes": [{"key": "gen_ai.input.messages", "value": {"stringValue": "secret"}}], "spanId": 1'
    assert b"secret" not in redact_record(None, span) and b"gen_ai.input.messages" in redact_record(None, span)


def test_otlp_error_and_response_bodies_decode_with_the_real_protos():
    status = status_pb2.Status.FromString(otlp.encode_status(otlp.PROTOBUF, 3, "bad span: é"))
    assert (status.code, status.message) == (3, "bad span: é")
    assert orjson.loads(otlp.encode_status(otlp.JSON, 16, "no token")) == {"code": 16, "message": "no token"}
    response = ExportTraceServiceResponse.FromString(otlp.encode_response(otlp.PROTOBUF, 2, "two bad"))
    assert (response.partial_success.rejected_spans, response.partial_success.error_message) == (2, "two bad")
    assert not ExportTraceServiceResponse.FromString(otlp.encode_response(otlp.PROTOBUF)).HasField("partial_success")


def test_protobuf_ids_become_otlp_json_hex():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    span.span_id = bytes.fromhex("eee19b7ec3c1b174")
    span.kind = 3
    decoded = otlp.decode_request(request.SerializeToString(), otlp.PROTOBUF)
    got = decoded["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert (got["traceId"], got["spanId"], got["kind"]) == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", 3)
    assert otlp.count_spans(decoded) == 1
    with pytest.raises(BodyError) as info:
        otlp.decode_request(b"\xff\xff\xff", otlp.PROTOBUF)
    assert info.value.status == 400
