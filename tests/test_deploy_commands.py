"""The commands the docker-compose stack and the Helm chart run exist, with those options."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SPENDWATCH_SERVICES = {"worker-1", "worker-2", "ingest", "sink", "pager", "migrate"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _parse_cli(argv: list[str]) -> None:
    """Parse ``spendwatch <argv>`` exactly as the CLI would, without running it."""
    import click

    from spendwatch.cli import cli

    name, *args = argv
    ctx = click.Context(cli)
    command = cli.get_command(ctx, name)
    assert command is not None, f"no spendwatch command {name!r}"
    sub = ["migrate", *args[1:]] if isinstance(command, click.Group) else args
    target = command.get_command(ctx, sub[0]) if isinstance(command, click.Group) else command
    target.make_context(name, list(sub[1:] if isinstance(command, click.Group) else sub), parent=ctx)


def test_every_command_the_deploy_files_run_exists_with_those_options(compose):
    helm = pytest.importorskip("helm_python")
    commands = [compose["services"][name]["command"] for name in SPENDWATCH_SERVICES]
    with helm.Chart.load(str(DEPLOY / "helm" / "spendwatch")) as chart:
        rendered = chart.render({"kafka": {"bootstrapServers": "k:9092"}, "clickhouse": {"url": "http://c:8123"}},
                                name="sw", namespace="ns")
    for name, text in rendered.items():
        if not name.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") in {"Deployment", "StatefulSet", "Job"}:
                commands += [c["args"] for c in doc["spec"]["template"]["spec"]["containers"]]
    config = str(DEPLOY / "docker" / "spendwatch.yaml")
    for argv in commands:
        argv = [config if a == "/etc/spendwatch/spendwatch.yaml" else a for a in argv]
        try:
            _parse_cli(argv)
        except Exception as exc:  # click.UsageError and friends
            pytest.fail(f"`spendwatch {' '.join(argv)}` does not parse: {exc}")


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("role", ["pager", "sink"])
def test_pager_and_sink_answer_the_probes_the_deploy_files_configure(role, tmp_path, kafka_bootstrap, unique_prefix,
                                                                     make_topics):
    """`spendwatch <role> --metrics-port N`: /readyz 503 until consuming, then 200; /metrics; clean SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from spendwatch.broker import free_port

    topics = {name: f"{unique_prefix}-{name}" for name in ("raw", "events", "outcomes", "alerts", "dead_letters",
                                                           "pager_log")}
    make_topics({t: 2 for name, t in topics.items() if name != "pager_log"})
    config = tmp_path / "spendwatch.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topics": topics},
        "clickhouse": {"consumer_group": f"{unique_prefix}-sink"},
        "paging": {"consumer_group": f"{unique_prefix}-pager", "transactional_id": f"{unique_prefix}-pager"},
    }))
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("spendwatch")), role, "--config", str(config),
                             "--metrics-port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / "log").open("w"), start_new_session=True)
    try:
        statuses: list[int | None] = []
        deadline = time.monotonic() + 90
        while not statuses or statuses[-1] != 200:  # polling: the probe is what Kubernetes polls too
            assert proc.poll() is None, (tmp_path / "log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"never ready: {statuses}"
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            if not statuses or statuses[-1] != status:
                statuses.append(status)
            time.sleep(0.1)
        assert set(statuses) <= {None, 503, 200}
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "spendwatch_pages_sent_total" in metrics and "process_resident_memory_bytes" in metrics
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
