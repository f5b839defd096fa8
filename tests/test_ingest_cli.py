"""``spendwatch ingest`` as users run it: refuses to start without tokens; with no broker
configured, starts the embedded one, creates the topics, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml
from click.testing import CliRunner
from ingest_support import canonical_event, read_topic

from spendwatch.broker import free_port
from spendwatch.cli import cli


def test_refuses_to_start_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("SPENDWATCH_INGEST_TOKENS", raising=False)
    config = tmp_path / "spendwatch.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "127.0.0.1:1"}}))
    result = CliRunner().invoke(cli, ["ingest", "--config", str(config)])
    assert result.exit_code != 0
    assert "no ingest token configured" in result.output and "SPENDWATCH_INGEST_TOKENS" in result.output


@pytest.mark.kafka
async def test_ingest_command_with_the_embedded_broker(tmp_path):
    port = free_port()
    config = tmp_path / "spendwatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "streams": {"partitions": 2},
                                      "ingest": {"port": port}}))
    env = {**os.environ, "SPENDWATCH_INGEST_TOKENS": "cli-gw=cli-token-123456", "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "spendwatch"), "ingest", "--config", str(config),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    output: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any("spendwatch ingest on" in line for line in output):
                line = (await proc.stdout.readline()).decode()
                assert line, "ingest exited early:\n" + "".join(output)
                output.append(line)
        bootstrap = re.search(r"embedded broker on (\S+)", "".join(output)).group(1)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):  # another process connecting to Kafka: poll its readiness
                while True:
                    async with http.get(f"{url}/readyz") as ready:
                        if ready.status == 200:
                            break
                    await asyncio.sleep(0.1)
            async with http.post(f"{url}/v1/events", data=orjson.dumps(canonical_event(1)),
                                 headers={"Authorization": "Bearer cli-token-123456"}) as resp:
                assert resp.status == 200, await resp.text()
        written = await read_topic(bootstrap, "spendwatch-raw")
        assert [orjson.loads(m.value)["gateway"] for m in written] == ["cli-gw"]
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = (await proc.stdout.read()).decode()
            assert await proc.wait() == 0, rest
        assert "stopping" in rest
    finally:
        if proc.returncode is None:  # a failed assertion: SIGTERM first, so ingest stops its embedded broker
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await proc.wait()
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
