"""The embedded Kafka broker for local runs and tests.

Production points ``kafka.bootstrap_servers`` at Apache Kafka; this module is only
used when no broker is configured. It runs the ``noida-db`` binary, which speaks the
Kafka protocol, as a child process on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click


def noida_binary() -> Path:
    import noida_db

    path = Path(noida_db.__file__).parent / "noida-db"
    if not path.exists():
        raise RuntimeError(f"noida-db binary not found at {path}; reinstall the noida-db package")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerError(RuntimeError):
    """The embedded broker could not start; the message says why (and what noida-db said)."""


def port_in_use(port: int) -> bool:
    """Whether something already listens on (or holds) 127.0.0.1:``port``."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = _log_tail(log_path) if log_path else ""
            errors = [line.removeprefix("error:").strip() for line in said.splitlines() if line.startswith("error:")]
            raise BrokerError(errors[-1] if errors else f"noida-db exited with code {proc.returncode}"
                              + (f":\n{said}" if said else ""))
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"embedded broker did not listen on 127.0.0.1:{port} within {timeout}s")


class EmbeddedBroker:
    """A Kafka-protocol broker running as a child process.

    >>> # with EmbeddedBroker(tmp_path) as broker: broker.bootstrap_servers
    """

    def __init__(self, data_dir: str | Path, port: int | None = None, log_path: str | Path | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else self.data_dir / "broker.log"
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        from spendwatch import broker_quirks

        if port_in_use(self.port):
            # else the connection check below would find the other process listening and claim success
            raise BrokerError(f"port {self.port} on 127.0.0.1 is already in use (another broker?); "
                              "choose another with --port, or point this role at the running one")
        broker_quirks.apply("noida-db")  # this process talks to noida-db from now on
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self._proc = subprocess.Popen(
            [str(noida_binary()), "start", "--only", "kafka", "--kafka-port", str(self.port),
             "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        try:
            _wait_for_port(self.port, self._proc, timeout, self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def create_topics(bootstrap_servers: str, topics: Mapping[str, int], *, compacted: set[str] = frozenset(),
                        replication_factor: int = 1, client_options: Mapping[str, Any] | None = None) -> None:
    """Create topics with explicit partition counts; existing topics are left as they are.

    ``client_options``: connection options (:func:`spendwatch.kafka_security.client_options`).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, num_partitions=n, replication_factor=replication_factor,
                     topic_configs={"cleanup.policy": "compact"} if name in compacted else {})
            for name, n in topics.items() if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


@contextlib.contextmanager
def embedded_broker(data_dir: str | Path, topics: Mapping[str, int] | None = None) -> Iterator[EmbeddedBroker]:
    """Start a broker, create ``topics``, yield it, stop it."""
    broker = EmbeddedBroker(data_dir).start()
    try:
        if topics:
            asyncio.run(create_topics(broker.bootstrap_servers, topics))
        yield broker
    finally:
        broker.stop()


#: How to run the roles as separate processes against one broker (docs/operations.md).
ONE_BROKER_HINT = ("run one `spendwatch broker --port 9092` and set `kafka: {bootstrap_servers: 127.0.0.1:9092, "
                   "broker: noida-db}` in the config every role reads")


def start_for_role(data_dir: str | Path, role: str) -> EmbeddedBroker:
    """The embedded broker a role starts for itself when ``kafka.bootstrap_servers`` is unset; when it cannot
    (another role already runs one in that directory, a port taken), a one-line error saying what to do."""
    path = Path(data_dir)
    try:
        return EmbeddedBroker(path).start()
    except (BrokerError, TimeoutError) as exc:
        raise click.ClickException(
            f"{role}: kafka.bootstrap_servers is unset, so it starts its own embedded broker in {path}, and that "
            f"failed: {exc}. To run several roles, {ONE_BROKER_HINT}.") from None


def banner(bootstrap_servers: str, data_dir: str) -> str:
    """What ``spendwatch broker`` says once it listens: where, and how to point the other roles at it."""
    return (f"embedded broker listening on {bootstrap_servers} (data in {data_dir}); Ctrl-C or SIGTERM stops it.\n"
            "Point the other roles (ingest, worker, sink, pager) at it in their config file:\n"
            "  kafka:\n"
            f"    bootstrap_servers: {bootstrap_servers}\n"
            "    broker: noida-db")


@click.command("broker")
@click.option("--data-dir", default=".spendwatch/kafka", show_default=True, type=click.Path(file_okay=False))
@click.option("--port", default=9092, show_default=True, type=int)
def broker(data_dir: str, port: int) -> None:
    """Run the embedded Kafka-protocol broker in the foreground (Ctrl-C or SIGTERM stops it and noida-db)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    b = EmbeddedBroker(data_dir, port=port)
    try:
        b.start()
    except (BrokerError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(banner(b.bootstrap_servers, data_dir))
    try:
        while not stop.is_set() and b.running():
            stop.wait(1.0)  # a signal sets it; the timeout notices noida-db dying on its own
    finally:
        b.stop()
    if not stop.is_set():
        raise click.ClickException(f"noida-db exited on its own; its log: {b.log_path}")


__all__ = ["BrokerError", "EmbeddedBroker", "create_topics", "embedded_broker", "free_port", "noida_binary"]
