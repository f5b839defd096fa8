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

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM's bundled prices: no network at import

from decimal import Decimal

import litellm
import orjson
import pytest
from ingest_support import LITELLM_TOKEN, ingest_settings, read_topic, running_ingest, values
from litellm.integrations.generic_api.generic_api_callback import GenericAPILogger
from litellm.litellm_core_utils import litellm_logging
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

pytestmark = pytest.mark.kafka

SECRET = "PROMPT TEXT THAT MUST NOT BE KEPT"

#: (key hash, key alias, user, team, session) of the proxy callers in the test traffic.
CALLERS = [
    ("hash-key-a", "alpha-bot", "ann", "team-search", "sess-a1"),
    ("hash-key-a", "alpha-bot", "ann", "team-search", "sess-a2"),
    ("hash-key-b", "beta-bot", "bob", "team-billing", "sess-b1"),
    ("hash-key-c", "gamma-bot", "cyd", "team-search", "sess-c1"),
]


def proxy_metadata(key: str, alias: str, user: str, team: str) -> dict:
    """What the LiteLLM proxy puts in ``metadata`` for a request made with a virtual key."""
    return {"user_api_key_hash": key, "user_api_key_alias": alias, "user_api_key_user_id": user,
            "user_api_key_team_id": team, "user_api_key_org_id": "org-1"}


@pytest.fixture
def litellm_callbacks():
    """Give each test fresh LiteLLM callback state and restore it afterwards."""
    saved = (list(litellm.callbacks), dict(litellm.callback_settings),
             litellm_logging.GenericAPILogger, litellm_logging._GENERIC_API_LOGGER_CLS)

    def forget_loggers() -> None:
        litellm_logging._in_memory_loggers[:] = [
            c for c in litellm_logging._in_memory_loggers if not isinstance(c, GenericAPILogger)]
        from litellm.litellm_core_utils import logging_callback_manager
        logging_callback_manager._generic_api_logger_cache.clear()

    forget_loggers()
    yield
    litellm.callbacks[:] = saved[0]
    litellm.callback_settings.clear()
    litellm.callback_settings.update(saved[1])
    litellm_logging.GenericAPILogger, litellm_logging._GENERIC_API_LOGGER_CLS = saved[2], saved[3]
    forget_loggers()


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


def generic_api_loggers() -> list[GenericAPILogger]:
    from litellm.litellm_core_utils import logging_callback_manager

    found = [c for c in litellm_logging._in_memory_loggers if isinstance(c, GenericAPILogger)]
    found += [c for c in logging_callback_manager._generic_api_logger_cache.values() if isinstance(c, GenericAPILogger)]
    return found


async def flush_litellm(expected_events: int) -> GenericAPILogger:
    # acompletion hands its success logging to a task that enqueues it on LiteLLM's logging
    # worker; await those tasks, then the worker, and every payload is in the logger's batch.
    helpers = [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "_client_async_logging_helper"]
    await asyncio.gather(*helpers)
    await GLOBAL_LOGGING_WORKER.flush()
    (logger,) = generic_api_loggers()
    assert len(logger.log_queue) == expected_events
    await logger.flush_queue()  # POSTs the batch; returns after the ingest service answered
    return logger


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
        litellm.callback_settings["spendwatch"] = {
            "callback_type": "generic_api", "endpoint": f"{svc.url}/v1/events",
            "headers": {"Authorization": f"Bearer {LITELLM_TOKEN}"}, "log_format": log_format,
        }
        litellm.logging_callback_manager.add_litellm_callback("spendwatch")
        expected = await make_calls(n_per_caller=2)
        logger = await flush_litellm(len(expected))
        assert logger.log_format == log_format
    assert_landed(await read_topic(kafka_bootstrap, settings.kafka.topics.raw), expected)


async def test_litellm_without_token_is_refused(litellm_callbacks, kafka_bootstrap, unique_prefix):
    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    async with running_ingest(settings) as svc:
        litellm.callback_settings["spendwatch"] = {
            "callback_type": "generic_api", "endpoint": f"{svc.url}/v1/events",
            "headers": {"Authorization": "Bearer wrong-token-123"}, "log_format": "json_array",
        }
        litellm.logging_callback_manager.add_litellm_callback("spendwatch")
        await litellm.acompletion(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], mock_response="y",
                                  metadata=proxy_metadata(*CALLERS[0][:4]))
        await flush_litellm(1)
    assert await read_topic(kafka_bootstrap, settings.kafka.topics.raw) == []
