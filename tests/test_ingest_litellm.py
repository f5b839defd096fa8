"""The real LiteLLM client logging to the ingest service, through the real broker.

``litellm.acompletion(mock_response=...)`` makes no network call, but runs LiteLLM's whole
logging path: the ``generic_api`` callback (``GenericAPILogger``) batches each call's
StandardLoggingPayload and POSTs it. The metadata passed is what the LiteLLM proxy fills in
from the caller's virtual key (``user_api_key_hash``, ``..._user_id``, ``..._team_id``) and
``litellm_session_id`` (which LiteLLM reports as ``trace_id``).

Two ways the proxy's config.yaml turns the callback on are exercised:

* ``callbacks: ["generic_api"]`` with ``GENERIC_LOGGER_ENDPOINT`` / ``GENERIC_LOGGER_HEADERS``
  (default ``json_array`` batches);
* a named callback with ``callback_settings: {name: {callback_type: generic_api, endpoint,
  headers, log_format}}``, for ``ndjson`` and ``single``.

No sleeps: LiteLLM's logging worker is drained with its own ``flush()``, then the logger's
batch is sent with its own ``flush_queue()``, which returns once the ingest service has
answered, which it does only once Kafka has acknowledged.
"""

from __future__ import annotations

from decimal import Decimal

import litellm
import orjson
import pytest
from ingest_clients import configure_generic_api, flush_litellm, fresh_litellm_callbacks, proxy_metadata
from ingest_support import LITELLM_TOKEN, ingest_settings, read_topic, running_ingest, values
from litellm.integrations.generic_api.generic_api_callback import GenericAPILogger
from litellm.litellm_core_utils import litellm_logging

pytestmark = pytest.mark.kafka

SECRET = "PROMPT TEXT THAT MUST NOT BE KEPT"

#: (key hash, key alias, user, team, session) of the proxy callers in the test traffic.
CALLERS = [
    ("hash-key-a", "alpha-bot", "ann", "team-search", "sess-a1"),
    ("hash-key-a", "alpha-bot", "ann", "team-search", "sess-a2"),
    ("hash-key-b", "beta-bot", "bob", "team-billing", "sess-b1"),
    ("hash-key-c", "gamma-bot", "cyd", "team-search", "sess-c1"),
]

litellm_callbacks = pytest.fixture(fresh_litellm_callbacks)


async def make_calls(n_per_caller: int = 3) -> list[dict]:
    """Proxy-like calls for every caller; returns what each call should become."""
    expected = []
    for key, alias, user, team, session in CALLERS:
        for i in range(n_per_caller):
            response = await litellm.acompletion(
                model="gpt-4o-mini", messages=[{"role": "user", "content": SECRET}], mock_response=f"answer {i}",
                metadata=proxy_metadata(key, alias, user, team), litellm_session_id=session,
            )
            usage = response.usage
            prompt_cost, completion_cost = litellm.cost_per_token(
                model="gpt-4o-mini", prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
            expected.append({"api_key_hash": key, "api_key_alias": alias, "user": user, "team": team,
                             "session_id": session, "input_tokens": usage.prompt_tokens,
                             "output_tokens": usage.completion_tokens,
                             "cost_usd": Decimal(str(prompt_cost + completion_cost))})
    return expected


def assert_landed(written: list, expected: list[dict]) -> None:
    got = sorted(values(written), key=lambda v: (v["api_key_hash"], v["session_id"]))
    want = sorted(expected, key=lambda v: (v["api_key_hash"], v["session_id"]))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["gateway"] == "gw-litellm"
        assert g["model"] == "gpt-4o-mini" and g["provider"] == "openai" and g["status"] == "success"
        for field in ("api_key_hash", "api_key_alias", "user", "team", "session_id", "input_tokens", "output_tokens"):
            assert g[field] == w[field], field
        assert Decimal(g["cost_usd"]) == w["cost_usd"] and g["cost_source"] == "gateway"
        assert g["org"] == "org-1"
    assert {m.key for m in written} == {c[0].encode() for c in CALLERS}, "keyed by the key scope"
    assert all(m.key == orjson.loads(m.value)["api_key_hash"].encode() for m in written)
    assert all(SECRET.encode() not in m.value and b"answer" not in m.value for m in written)


async def test_litellm_generic_api_callback_env_configured(litellm_callbacks, kafka_bootstrap, unique_prefix, monkeypatch):
    # callbacks=["generic_api"] resolves through litellm-enterprise, which the proxy's install
    # (litellm[proxy]) ships and which only binds this name to litellm's own GenericAPILogger.
    # Bind it the same way here instead of pulling in the proxy's web stack.
    monkeypatch.setattr(litellm_logging, "GenericAPILogger", GenericAPILogger)
    monkeypatch.setattr(litellm_logging, "_GENERIC_API_LOGGER_CLS", GenericAPILogger)

    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    async with running_ingest(settings) as svc:
        monkeypatch.setenv("GENERIC_LOGGER_ENDPOINT", f"{svc.url}/v1/events")
        monkeypatch.setenv("GENERIC_LOGGER_HEADERS", f"Authorization=Bearer {LITELLM_TOKEN}")
        litellm.callbacks = ["generic_api"]
        expected = await make_calls()
        logger = await flush_litellm(len(expected))
        assert logger.log_format == "json_array"
    written = await read_topic(kafka_bootstrap, settings.kafka.topics.raw)
    assert_landed(written, expected)
    assert await read_topic(kafka_bootstrap, settings.kafka.topics.dead_letters) == []


@pytest.mark.parametrize("log_format", ["ndjson", "single"])
async def test_litellm_generic_api_callback_settings(litellm_callbacks, kafka_bootstrap, unique_prefix, log_format):
    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    async with running_ingest(settings) as svc:
        # config.yaml: litellm_settings: {callbacks: ["spendwatch"], callback_settings: {spendwatch: {...}}}
        configure_generic_api("spendwatch", f"{svc.url}/v1/events", LITELLM_TOKEN, log_format)
        expected = await make_calls(n_per_caller=2)
        logger = await flush_litellm(len(expected))
        assert logger.log_format == log_format
    assert_landed(await read_topic(kafka_bootstrap, settings.kafka.topics.raw), expected)


async def test_litellm_without_token_is_refused(litellm_callbacks, kafka_bootstrap, unique_prefix):
    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    async with running_ingest(settings) as svc:
        configure_generic_api("spendwatch", f"{svc.url}/v1/events", "wrong-token-123", "json_array")
        await litellm.acompletion(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], mock_response="y",
                                  metadata=proxy_metadata(*CALLERS[0][:4]))
        await flush_litellm(1)
    assert await read_topic(kafka_bootstrap, settings.kafka.topics.raw) == []
