"""The documented local setup end to end, as a newcomer runs it (docs/operations.md, docs/ingest.md):
`spendwatch up` runs broker, worker, ingest, sink and pager as separate processes from one config; the
real LiteLLM SDK (sync `completion` in a thread with no event loop, async `acompletion`) sends through
SpendwatchLogger and the real OpenTelemetry SDK over OTLP/HTTP; two runaway sessions page on fake
PagerDuty and Slack servers; ClickHouse is queried while the sink runs; SIGTERM stops everything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM's bundled prices: no network at import

import litellm
import pytest
import yaml
from ingest_clients import fresh_litellm_callbacks
from ingest_support import OTEL_TOKEN
from paging_fakes import ROUTING_KEY, FakePagerDuty, FakeSlack
from test_demo import processes_mentioning
from test_ingest_e2e import expensive_response, otel_traffic

from spendwatch.broker import free_port
from spendwatch.litellm_logger import SpendwatchLogger

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SPENDWATCH = str(Path(sys.executable).with_name("spendwatch"))
SDK_TOKEN = "tok-sdk-0123456789"
litellm_callbacks = pytest.fixture(fresh_litellm_callbacks)


def _config(tmp_path: Path, pd: FakePagerDuty, slack: FakeSlack) -> tuple[Path, int]:
    ingest_port = free_port()
    config = {
        "data_dir": str(tmp_path / "data"),
        "streams": {"web_port": free_port(), "partitions": 2},
        "ingest": {"port": ingest_port},
        "detectors": {"session_burn": {"threshold_usd": "2"}},
        "paging": {
            "route": {"receiver": "owners", "group_by": ["..."], "group_wait": "0s", "group_interval": "1s"},
            "receivers": [{"name": "owners",
                           "pagerduty": [{"routing_key_env": "E2E_PD_KEY", "url": pd.enqueue_url}],
                           "slack": [{"bot_token_env": "E2E_SLACK_TOKEN", "channel": "C0SPEND01",
                                      "api_url": slack.api_url}]}],
        },
    }
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, ingest_port


def _sdk_calls(logger: SpendwatchLogger, n: int) -> None:
    """Synchronous completions in a plain thread: no event loop anywhere near them."""
    for _ in range(n):
        litellm.completion(model="openai/gpt-4o", messages=[{"role": "user", "content": "retry the tool"}],
                           mock_response=expensive_response(), litellm_session_id="sdk-loop")


async def _query(config: Path, sql: str) -> str:
    proc = await asyncio.create_subprocess_exec(SPENDWATCH, "query", "--config", str(config), "--format", "csv", sql,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0 and b"Cannot lock" not in err, err.decode()
    return out.decode().replace("\r\n", "\n")  # csv rows end in CRLF


async def test_the_local_setup_from_sdk_calls_to_pages_and_live_queries(litellm_callbacks, tmp_path):
    pd, slack = await FakePagerDuty().start(), await FakeSlack().start()
    config, ingest_port = _config(tmp_path, pd, slack)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "E2E_PD_KEY": ROUTING_KEY, "E2E_SLACK_TOKEN": slack.token,
           "SPENDWATCH_INGEST_TOKENS": f"litellm-sdk={SDK_TOKEN},otel={OTEL_TOKEN}"}
    up = await asyncio.create_subprocess_exec(SPENDWATCH, "up", "--config", str(config), env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[str] = []
    try:
        async with asyncio.timeout(240):
            while not any(line.startswith("spendwatch up:") for line in seen):
                line = (await up.stdout.readline()).decode()
                assert line, "spendwatch up ended early:\n" + "".join(seen)
                seen.append(line)
        ingest = f"http://127.0.0.1:{ingest_port}"

        logger = SpendwatchLogger(f"{ingest}/v1/events", SDK_TOKEN, team="team-agents", user="agent-sdk")
        litellm.callbacks = [logger]
        await asyncio.to_thread(_sdk_calls, logger, 4)
        for _ in range(4):
            await litellm.acompletion(model="gpt-4o", messages=[{"role": "user", "content": "retry the tool"}],
                                      mock_response=expensive_response(), litellm_session_id="sdk-loop")
        assert await asyncio.to_thread(logger.wait_handled, 8, 60) and logger.stats.sent == 8, logger.stats
        results = await asyncio.to_thread(otel_traffic, f"{ingest}/v1/traces")
        assert results and all(r.name == "SUCCESS" for r in results)

        # pages reach PagerDuty and Slack for both runaway sessions, nothing else pages
        await pd.wait_for(lambda: {"user:agent-sdk", "user:looper"} <= {k.split(":")[2] + ":" + k.split(":")[3]
                                                                         for k in pd.pages}, timeout=180)
        await slack.wait_for(lambda: len(slack.messages) >= 2, timeout=60)
        assert all(k.startswith("session_burn:key:user:") for k in pd.pages), pd.pages
        assert not [k for k in pd.pages if "calm" in k], "ordinary traffic does not page"

        # ClickHouse while the sink runs: every call once, by gateway, one model name for openai/gpt-4o and gpt-4o
        want = "gateway,model,n\nlitellm-sdk,gpt-4o,8\notel,claude-sonnet-4-5,11\n"
        sql = "SELECT gateway, model, count() AS n FROM events GROUP BY gateway, model ORDER BY gateway"
        got = ""
        deadline = asyncio.get_running_loop().time() + 90
        while (got := await _query(config, sql)) != want:
            assert asyncio.get_running_loop().time() < deadline, got
            await asyncio.sleep(0.5)  # the sink is another process: poll the table
        assert "user:agent-sdk" in await _query(config, "SELECT DISTINCT key_scope FROM events")

        up.send_signal(signal.SIGTERM)
        async with asyncio.timeout(120):
            rest = (await up.stdout.read()).decode()
            assert await up.wait() == 0, "".join(seen) + rest
        assert processes_mentioning(str(tmp_path / "data")) == []
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGTERM)
            await up.wait()
        await pd.stop()
        await slack.stop()
