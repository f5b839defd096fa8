"""`spendwatch up`: broker, worker, ingest, sink and pager as separate processes from one config, an event
through them, and every process gone after SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from ingest_support import canonical_event
from test_demo import processes_mentioning

from spendwatch.broker import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SPENDWATCH = str(Path(sys.executable).with_name("spendwatch"))


def test_up_runs_every_role_as_a_process_and_stops_them_all(tmp_path):
    data_dir = tmp_path / "data"
    ingest_port = free_port()
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data_dir), "streams": {"web_port": free_port(), "partitions": 2},
                                      "ingest": {"port": ingest_port, "allow_unauthenticated": True}}))
    proc = subprocess.Popen([SPENDWATCH, "up", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        seen = []
        for line in proc.stdout:  # the roles report ready one by one, then the summary line
            seen.append(line)
            if line.startswith("spendwatch up:"):
                break
        out = "".join(seen)
        assert "spendwatch up: Kafka on 127.0.0.1:" in out, out
        for role in ("worker", "ingest", "sink", "pager"):
            assert f"  {role}" in out and f"logs/{role}.log" in out, out
        roles = processes_mentioning(str(data_dir))
        assert any("noida-db" in p for p in roles) and sum(" --config " in p for p in roles) >= 4, roles

        request = urllib.request.Request(f"http://127.0.0.1:{ingest_port}/v1/events",
                                         data=json.dumps(canonical_event(1)).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.loads(answer.read())["accepted"] == 1

        # ClickHouse is queried while the sink runs (it holds the embedded chDB and answers for it)
        def query(sql: str) -> subprocess.CompletedProcess:
            return subprocess.run([SPENDWATCH, "query", "--config", str(config), "--format", "csv", sql],
                                  capture_output=True, text=True, timeout=60)

        deadline = time.monotonic() + 90
        while (count := query("SELECT count() FROM events")).stdout.strip().splitlines()[-1:] != ["1"]:
            assert count.returncode == 0 and "Cannot lock" not in count.stderr, count.stderr
            assert time.monotonic() < deadline, "the event never reached ClickHouse"
            time.sleep(0.5)  # the worker and the sink are other processes: poll the table
        report = subprocess.run([SPENDWATCH, "report", "total_spend", "--config", str(config), "--since", "7d"],
                                capture_output=True, text=True, timeout=60)
        assert report.returncode == 0 and "0.001200" in report.stdout, report.stdout + report.stderr
        refused = query("DROP TABLE events")
        assert refused.returncode == 1 and "readonly" in refused.stderr.lower(), refused.stderr
        assert query("SELECT count() FROM events").stdout.strip().splitlines()[-1] == "1"

        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + rest
        assert "stopping pager, sink, ingest, worker, broker" in rest
        assert processes_mentioning(str(data_dir)) == []
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
