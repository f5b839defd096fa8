"""The plain LiteLLM SDK (no proxy) sending to the ingest service through ``SpendwatchLogger``.

The documented path (docs/ingest.md, "LiteLLM SDK"): ``litellm.callbacks = [SpendwatchLogger(...)]``.
A synchronous ``litellm.completion`` in a script with no event loop at all (a subprocess that exits
right after its calls: the logger's exit hook delivers them) and ``litellm.acompletion`` in a running
loop both land in the raw topic once per call, attributed, with the provider prefix taken off the model.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM's bundled prices: no network at import

import litellm
import pytest
from ingest_clients import fresh_litellm_callbacks
from ingest_support import LITELLM_TOKEN, ingest_settings, read_topic, running_ingest, values

from spendwatch.litellm_logger import SpendwatchLogger

pytestmark = pytest.mark.kafka

SECRET = "PROMPT TEXT THAT MUST NOT LEAVE THE PROCESS"
litellm_callbacks = pytest.fixture(fresh_litellm_callbacks)

SYNC_SCRIPT = textwrap.dedent('''
    import litellm
    from spendwatch.litellm_logger import SpendwatchLogger

    litellm.callbacks = [SpendwatchLogger(team="team-sdk", user="batch-job")]  # endpoint, token from the environment
    for i in range(3):
        litellm.completion(model="openai/gpt-4o", messages=[{"role": "user", "content": "SECRET"}],
                           mock_response="an answer", litellm_session_id=f"run-{i % 2}")
    litellm.completion(model="gpt-4o", messages=[{"role": "user", "content": "SECRET"}], mock_response="ok",
                       user="ann")
    print("done")
''').replace("SECRET", SECRET)


async def test_sync_completion_in_a_script_without_an_event_loop(kafka_bootstrap, unique_prefix, tmp_path):
    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    script = tmp_path / "agent.py"
    script.write_text(SYNC_SCRIPT)
    async with running_ingest(settings) as svc:
        env = {**os.environ, "SPENDWATCH_INGEST_URL": f"{svc.url}/v1/events", "SPENDWATCH_INGEST_TOKEN": LITELLM_TOKEN,
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        proc = await asyncio.create_subprocess_exec(sys.executable, str(script), env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0 and out.strip() == b"done", err.decode()[-2000:]
        assert b"no running event loop" not in err and b"Traceback" not in err, err.decode()[-2000:]
    written = await read_topic(kafka_bootstrap, settings.kafka.topics.raw)
    events = sorted(values(written), key=lambda e: e["user"])
    assert len(events) == 4, "each call once: not lost at exit, not sent by both the sync and async hooks"
    assert len({e["event_id"] for e in events}) == 4
    assert [e["user"] for e in events] == ["ann", "batch-job", "batch-job", "batch-job"]  # a call's own user= wins
    assert {e["team"] for e in events} == {"team-sdk"}
    assert {(e["model"], e["provider"]) for e in events} == {("gpt-4o", "openai")}
    assert sorted(e["session_id"] for e in events if e["user"] == "batch-job") == ["run-0", "run-0", "run-1"]
    assert all(e["gateway"] == "gw-litellm" and e["cost_source"] == "gateway" and float(e["cost_usd"]) > 0
               for e in events)
    assert all(SECRET.encode() not in m.value for m in written)
    assert await read_topic(kafka_bootstrap, settings.kafka.topics.dead_letters) == []


async def test_async_acompletion_success_and_failure(litellm_callbacks, kafka_bootstrap, unique_prefix):
    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    async with running_ingest(settings) as svc:
        logger = SpendwatchLogger(f"{svc.url}/v1/events", LITELLM_TOKEN, team="team-async", user="async-agent")
        litellm.callbacks = [logger]
        for i in range(3):
            await litellm.acompletion(model="anthropic/claude-sonnet-4-5", mock_response=f"answer {i}",
                                      messages=[{"role": "user", "content": SECRET}], litellm_session_id="run-a")
        with pytest.raises(litellm.RateLimitError):
            await litellm.acompletion(
                model="gpt-4o-mini", messages=[{"role": "user", "content": SECRET}],
                mock_response=litellm.RateLimitError("slow down", llm_provider="openai", model="gpt-4o-mini"))
        assert await asyncio.to_thread(logger.wait_handled, 4), logger.stats
    written = await read_topic(kafka_bootstrap, settings.kafka.topics.raw, at_least=4)
    events = values(written)
    assert len(events) == 4 and logger.stats.sent == 4 and logger.stats.dropped == 0
    ok = [e for e in events if e["status"] == "success"]
    [failed] = [e for e in events if e["status"] == "failure"]
    assert {(e["model"], e["provider"], e["session_id"]) for e in ok} == {("claude-sonnet-4-5", "anthropic", "run-a")}
    assert failed["error_type"] == "RateLimitError" and float(failed["cost_usd"]) == 0
    assert {(e["user"], e["team"]) for e in events} == {("async-agent", "team-async")}
    assert all(SECRET.encode() not in m.value for m in written)


async def test_a_refused_token_is_reported_not_retried(litellm_callbacks, kafka_bootstrap, unique_prefix, caplog):
    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    async with running_ingest(settings) as svc:
        logger = SpendwatchLogger(f"{svc.url}/v1/events", "wrong-token-123", user="x")
        litellm.callbacks = [logger]
        await litellm.acompletion(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], mock_response="y")
        assert await asyncio.to_thread(logger.wait_handled, 1)
    assert (logger.stats.sent, logger.stats.dropped) == (0, 1)
    assert "HTTP 401" in caplog.text
    assert await read_topic(kafka_bootstrap, settings.kafka.topics.raw) == []


def test_the_proxy_loads_the_logger_by_its_documented_import_path(tmp_path, monkeypatch):
    """docs/ingest.md option C: `callbacks: ["spendwatch.litellm_logger.spendwatch_logger"]`, through the
    function LiteLLM's proxy resolves such names with, configured from the environment."""
    from litellm.proxy.types_utils.utils import get_instance_fn

    instance = get_instance_fn("spendwatch.litellm_logger.spendwatch_logger", str(tmp_path / "config.yaml"))
    assert isinstance(instance, SpendwatchLogger)
