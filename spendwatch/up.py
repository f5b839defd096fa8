"""``spendwatch up``: every role as its own process from one config, on one machine.

The broker (unless ``kafka.bootstrap_servers`` names one), a stream worker, ingest, the ClickHouse
sink and the pager, each a child process in its own process group with its log in
``data_dir/logs/<role>.log``: the same processes a deployment runs, in the order they need each
other. Ctrl-C or SIGTERM stops them in reverse order; a role that dies stops the others, and its
log's last lines say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from spendwatch.broker import free_port

#: Roles in start order (each needs the ones before it); stopped in reverse.
ROLES = ("worker", "ingest", "sink", "pager")


def effective_config(config_path: Path | None, bootstrap_servers: str | None) -> dict[str, Any]:
    """The user's YAML as written (``${VAR}`` left for each role to resolve), with the broker ``up`` started.

    >>> effective_config(None, "127.0.0.1:9092")["kafka"]
    {'bootstrap_servers': '127.0.0.1:9092', 'broker': 'noida-db'}
    """
    raw = yaml.safe_load(config_path.read_text()) if config_path else None
    config = dict(raw or {})
    if bootstrap_servers:
        config["kafka"] = {**(config.get("kafka") or {}), "bootstrap_servers": bootstrap_servers, "broker": "noida-db"}
    return config


def _spendwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "spendwatch.cli", *args]


async def run_up(config_path: Path | None, broker_port: int) -> None:
    from spendwatch.config import ConfigError, load_settings
    from spendwatch.demo import Child, wait_ready

    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    data_dir = Path(settings.data_dir).absolute()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[tuple[Child, str | None]] = []  # (process, readiness URL)
    try:
        bootstrap = settings.kafka.bootstrap_servers
        if bootstrap is None:
            port = broker_port or free_port()
            broker = Child("broker", _spendwatch("broker", "--port", str(port), "--data-dir", str(data_dir / "kafka")),
                           logs / "broker.log").start()
            children.append((broker, None))
            bootstrap = f"127.0.0.1:{port}"
            await _wait_listening(broker, port)
        up_config = data_dir / "up.yaml"
        up_config.write_text("# Written by `spendwatch up`: the config every role below reads.\n"
                             + yaml.safe_dump(effective_config(config_path, None if settings.kafka.bootstrap_servers
                                                               else bootstrap), sort_keys=False))
        metrics = {"sink": free_port(), "pager": free_port()}
        ready = {
            "worker": f"http://127.0.0.1:{settings.streams.web_port}/readyz",
            "ingest": f"http://127.0.0.1:{settings.ingest.port}/readyz",
            "sink": f"http://127.0.0.1:{metrics['sink']}/readyz",
            "pager": f"http://127.0.0.1:{metrics['pager']}/readyz",
        }
        for role in ROLES:
            extra = ["--metrics-port", str(metrics[role])] if role in metrics else []
            child = Child(role, _spendwatch(role, "--config", str(up_config), *extra), logs / f"{role}.log").start()
            children.append((child, ready[role]))
            await wait_ready(ready[role], child, timeout=180)
            click.echo(f"  {role:<7} ready   {ready[role].removesuffix('/readyz')}   log: {child.log_path}")
        click.echo(f"spendwatch up: Kafka on {bootstrap}; gateways post to "
                   f"http://{settings.ingest.host}:{settings.ingest.port}/v1/events (and /v1/traces). "
                   "Ctrl-C or SIGTERM stops every role.")
        await _until_stopped_or_dead([c for c, _ in children])
    finally:
        for child, _ in reversed(children):
            await asyncio.to_thread(child.stop)


async def _wait_listening(broker: Any, port: int, timeout: float = 60.0) -> None:
    """Until the broker child listens (it has no /readyz); fail early when it exits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        broker.check()
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        if loop.time() > deadline:
            raise click.ClickException(f"the broker did not listen on 127.0.0.1:{port} within {timeout:.0f}s")
        await asyncio.sleep(0.2)  # polling the port: the child offers no event to await


async def _until_stopped_or_dead(children: list[Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        for child in children:
            child.check()  # raises with the log's tail when a role died
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    click.echo("spendwatch up: stopping pager, sink, ingest, worker, broker")


@click.command("up")
@click.option("--config", "-c", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="SPENDWATCH_CONFIG", help="spendwatch YAML config every role reads (env SPENDWATCH_CONFIG).")
@click.option("--broker-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of the broker `up` starts when kafka.bootstrap_servers is unset; 0 picks a free one.")
def up(config_path: Path | None, broker_port: int) -> None:
    """Run broker, worker, ingest, sink and pager as separate processes from one config (local setups)."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        asyncio.run(run_up(config_path, broker_port))
    except KeyboardInterrupt:
        pass
