"""`spendwatch broker` as a user runs it for a local multi-process setup: it says how to point the other
roles at it, SIGTERM stops noida-db with it, and a second one on a used port fails clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spendwatch.broker import free_port

pytestmark = pytest.mark.kafka

SPENDWATCH = str(Path(sys.executable).with_name("spendwatch"))


def noida_processes(data_dir: Path) -> list[int]:
    """Process ids of live noida-db processes serving ``data_dir``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((line for line in (proc / "status").read_text().splitlines() if line.startswith("State:")), "")
        except OSError:
            continue
        if "noida-db" in cmdline and str(data_dir) in cmdline and "zombie" not in state:
            found.append(int(proc.name))
    return found


def test_broker_banner_sigterm_and_a_used_port(tmp_path):
    port = free_port()
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([SPENDWATCH, "broker", "--port", str(port), "--data-dir", str(first_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        banner = [first.stdout.readline() for _ in range(5)]  # printed once it listens
        text = "".join(banner)
        assert f"listening on 127.0.0.1:{port}" in text, text
        assert f"bootstrap_servers: 127.0.0.1:{port}" in text and "broker: noida-db" in text, text
        assert noida_processes(first_dir)

        second = subprocess.run([SPENDWATCH, "broker", "--port", str(port), "--data-dir", str(second_dir)],
                                capture_output=True, text=True, timeout=60, env=env)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"port {port} on 127.0.0.1 is already in use" in second.stderr
        assert "listening" not in second.stdout and "Traceback" not in second.stderr
        assert noida_processes(second_dir) == []

        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
        assert first.returncode == 0, first.stdout.read()
        assert noida_processes(first_dir) == [], "SIGTERM left noida-db running"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        for pid in noida_processes(first_dir) + noida_processes(second_dir):  # never leak a broker
            os.kill(pid, signal.SIGTERM)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SPENDWATCH, *args], capture_output=True, text=True, timeout=90, cwd=cwd,
                          env={**os.environ, "SPENDWATCH_INGEST_TOKENS": "gw=token-0123456789"})


def _one_clean_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    return error


def test_roles_say_in_one_line_what_to_do_when_a_broker_already_holds_their_data_dir(tmp_path):
    """Default config, no bootstrap_servers: each role starts its own broker in data_dir/kafka; a second role
    found noida-db already running there and crashed with a traceback."""
    from spendwatch.broker import EmbeddedBroker

    (tmp_path / "spendwatch.yaml").write_text(f"data_dir: {tmp_path / 'data'}\n")
    with EmbeddedBroker(tmp_path / "data" / "kafka"):  # what the first role (a worker, say) started
        for role in ("pager", "ingest"):
            error = _one_clean_error(_run(role, "--config", "spendwatch.yaml", cwd=tmp_path))
            assert f"{role}: kafka.bootstrap_servers is unset" in error and "already running" in error, error
            assert "bootstrap_servers: 127.0.0.1:9092, broker: noida-db" in error
    error = _one_clean_error(_run("sink", "--config", "spendwatch.yaml", cwd=tmp_path))
    assert "needs kafka.bootstrap_servers" in error and "spendwatch broker" in error


def test_roles_say_in_one_line_that_no_broker_answers(tmp_path):
    (tmp_path / "down.yaml").write_text(f"data_dir: {tmp_path}\nkafka: {{bootstrap_servers: '127.0.0.1:{free_port()}'}}\n")
    for role in ("pager", "sink"):
        error = _one_clean_error(_run(role, "--config", "down.yaml", cwd=tmp_path))
        assert f"{role}: no Kafka broker answers at 127.0.0.1:" in error and "is it running?" in error, error
