"""The service's own HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

Every long-running spendwatch process (worker, ingest, pager, sink) serves the same
three endpoints, so Prometheus and Kubernetes treat them alike:

``GET /metrics``
    Prometheus text format: every metric in :data:`spendwatch.metrics.REGISTRY`
    plus the standard ``process_*`` metrics (resident memory, CPU, open files).
``GET /healthz``
    Liveness. 200 while the process's event loop answers and every liveness check
    passes; 503 otherwise (Kubernetes restarts the pod).
``GET /readyz``
    Readiness. 200 once every readiness check passes (connected to Kafka,
    partitions assigned, state recovered...); 503 with the failing checks named
    otherwise (Kubernetes takes the pod out of the Service until it is ready).

How a process mounts them:

* an aiohttp application: :func:`add_observability_routes`;
* a Faust app (its built-in web server): :func:`add_faust_observability_routes`;
* a process with no web server of its own: :func:`start_observability_server`.

Checks are plain callables returning ``bool`` (or ``(bool, reason)``), sync or async,
registered on a :class:`HealthChecks`:

>>> checks = HealthChecks()
>>> checks.set_ready("kafka", False, "not connected yet")
>>> checks.add_readiness_check("always", lambda: True)
>>> import asyncio
>>> asyncio.run(checks.readiness())
(False, {'always': 'ok', 'kafka': 'not connected yet'})
>>> checks.set_ready("kafka", True)
>>> asyncio.run(checks.readiness())[0]
True
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import click
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

from spendwatch.metrics import REGISTRY

if TYPE_CHECKING:  # pragma: no cover
    import faust

CheckResult = Union[bool, tuple[bool, str]]
Check = Callable[[], Union[CheckResult, Awaitable[CheckResult]]]

#: Longest a single health check may take before it counts as failed, seconds.
CHECK_TIMEOUT_S = 2.0

_PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=_PROCESS_REGISTRY)


def metrics_payload() -> bytes:
    """The Prometheus exposition of spendwatch's metrics and the process metrics."""
    return generate_latest(REGISTRY) + generate_latest(_PROCESS_REGISTRY)


class HealthChecks:
    """Named liveness and readiness checks for one process.

    A check returns ``True``/``False`` or ``(ok, reason)``; it may be a coroutine
    function. A check that raises or takes longer than :data:`CHECK_TIMEOUT_S` fails,
    with the exception as its reason. Static flags (:meth:`set_ready`) suit state a
    process already tracks, such as "partitions assigned".
    """

    def __init__(self) -> None:
        self._liveness: dict[str, Check] = {}
        self._readiness: dict[str, Check] = {}
        self.started_at = time.time()

    def add_liveness_check(self, name: str, check: Check) -> None:
        """Register a check that, failing, means the process should be restarted."""
        self._liveness[name] = check

    def add_readiness_check(self, name: str, check: Check) -> None:
        """Register a check that, failing, means the process should get no traffic yet."""
        self._readiness[name] = check

    def set_ready(self, name: str, ready: bool, reason: str = "not ready") -> None:
        """Set a static readiness flag (replaces any check of that name)."""
        result: CheckResult = True if ready else (False, reason)
        self._readiness[name] = lambda: result

    async def liveness(self) -> tuple[bool, dict[str, str]]:
        """Run the liveness checks: (all passed, {name: 'ok' or the reason})."""
        return await _run_checks(self._liveness)

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Run the readiness checks: (all passed, {name: 'ok' or the reason})."""
        return await _run_checks(self._readiness)


async def _run_one(check: Check) -> tuple[bool, str]:
    try:
        result = check()
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, CHECK_TIMEOUT_S)
    except Exception as exc:  # a broken check is a failed check, never a crashed endpoint
        return False, f"{type(exc).__name__}: {exc}"
    if isinstance(result, tuple):
        ok, reason = result
        return bool(ok), ("ok" if ok else str(reason))
    return bool(result), ("ok" if result else "failed")


async def _run_checks(checks: dict[str, Check]) -> tuple[bool, dict[str, str]]:
    names = sorted(checks)
    results = await asyncio.gather(*(_run_one(checks[n]) for n in names))
    report = {name: reason for name, (_, reason) in zip(names, results, strict=True)}
    return all(ok for ok, _ in results), report


def _health_body(ok: bool, report: dict[str, str], checks: HealthChecks) -> dict[str, Any]:
    return {
        "status": "ok" if ok else "unavailable",
        "checks": report,
        "uptime_s": round(time.time() - checks.started_at, 1),
    }


# --- aiohttp ------------------------------------------------------------------------


def http_status(url: str, timeout: float = 2.0) -> int:
    """The status a GET of ``url`` answers (blocking; for probing another process's ``/readyz``).

    Raises ``OSError`` (``URLError`` included) when nothing answers.
    """
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a URL we built
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def add_observability_routes(app: web.Application, checks: HealthChecks | None = None) -> HealthChecks:
    """Add ``GET /metrics``, ``/healthz`` and ``/readyz`` to an aiohttp application.

    Parameters
    ----------
    app
        The application, before it starts (routes cannot be added to a running app).
    checks
        The process's health checks; a new, empty :class:`HealthChecks` (always
        healthy and ready) when omitted.

    Returns
    -------
    HealthChecks
        The checks the endpoints consult; register more on it at any time.
    """
    checks = checks or HealthChecks()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics_payload(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok, report = await checks.liveness()
        return web.json_response(_health_body(ok, report, checks), status=200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        ok, report = await checks.readiness()
        return web.json_response(_health_body(ok, report, checks), status=200 if ok else 503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return checks


# --- Faust --------------------------------------------------------------------------


def add_faust_observability_routes(app: faust.App, checks: HealthChecks | None = None) -> HealthChecks:
    """Add ``GET /metrics``, ``/healthz`` and ``/readyz`` to a Faust app's web server.

    Call it where the app is declared, before the worker starts. The worker's web
    server listens on ``streams.web_host:streams.web_port``.

    Parameters
    ----------
    app
        The Faust app.
    checks
        As for :func:`add_observability_routes`.

    Returns
    -------
    HealthChecks
        The checks the endpoints consult.
    """
    checks = checks or HealthChecks()

    @app.page("/metrics", name="spendwatch-metrics")
    async def metrics(self: Any, request: Any) -> Any:
        return self.bytes(metrics_payload(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz", name="spendwatch-healthz")
    async def healthz(self: Any, request: Any) -> Any:
        ok, report = await checks.liveness()
        return self.json(_health_body(ok, report, checks), status=200 if ok else 503)

    @app.page("/readyz", name="spendwatch-readyz")
    async def readyz(self: Any, request: Any) -> Any:
        ok, report = await checks.readiness()
        return self.json(_health_body(ok, report, checks), status=200 if ok else 503)

    return checks


# --- a standalone server ------------------------------------------------------------


@dataclass
class ObservabilityServer:
    """A running aiohttp server serving only the observability endpoints."""

    runner: web.AppRunner
    host: str
    port: int
    checks: HealthChecks

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_observability_server(
    host: str = "127.0.0.1", port: int = 0, checks: HealthChecks | None = None
) -> ObservabilityServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` in the running loop.

    For processes without a web server of their own (the pager, the ClickHouse
    sink). ``port=0`` picks a free port; the chosen one is on the result.

    Returns
    -------
    ObservabilityServer
        Call ``await server.stop()`` on shutdown.
    """
    app = web.Application()
    checks = add_observability_routes(app, checks)
    redact_unparsed_request_logs()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = site._server.sockets[0].getsockname()[1] if port == 0 else port  # type: ignore[union-attr]
    return ObservabilityServer(runner=runner, host=host, port=bound_port, checks=checks)


@contextlib.asynccontextmanager
async def observability_server(
    port: int | None, host: str = "0.0.0.0", checks: HealthChecks | None = None  # noqa: S104 - pods need it
) -> AsyncIterator[ObservabilityServer | None]:
    """Serve the endpoints for the duration of a ``async with`` block; ``port=None`` serves nothing.

    For a service command's main coroutine (the pager, the ClickHouse sink)::

        async with observability_server(metrics_port) as server:
            if server:
                server.checks.add_readiness_check("kafka", service.ready.is_set)
            await service.run()
    """
    if port is None:
        yield None
        return
    server = await start_observability_server(host, port, checks)
    try:
        yield server
    finally:
        await server.stop()


#: The ``--metrics-port`` option every service command without a web server of its own takes
#: (the Helm chart and docker-compose pass it; env SPENDWATCH_METRICS_PORT).
metrics_port_option = click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=None, envvar="SPENDWATCH_METRICS_PORT",
    help="Serve /metrics, /healthz and /readyz on this port (all interfaces). Default: not served.",
)


__all__ = [
    "HealthChecks",
    "ObservabilityServer",
    "add_faust_observability_routes",
    "add_observability_routes",
    "metrics_payload",
    "metrics_port_option",
    "observability_server",
    "start_observability_server",
]


class UnparsedRequestFilter(logging.Filter):
    """Keeps what a request that aiohttp cannot parse would put in the log to the error's class.

    aiohttp logs such a request with its exception, whose text quotes the offending line: a
    header over the size limit is usually ``Authorization``, so its bearer token would be
    logged. The record keeps its message, the exception's class and status; not its text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: {type(exc).__name__} (HTTP {exc.code}; request line and headers not logged)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_UNPARSED_REQUEST_FILTER = UnparsedRequestFilter()


def redact_unparsed_request_logs() -> None:
    """Install :class:`UnparsedRequestFilter` on aiohttp's server logger (once; every HTTP server of spendwatch)."""
    logger = logging.getLogger("aiohttp.server")
    if _UNPARSED_REQUEST_FILTER not in logger.filters:
        logger.addFilter(_UNPARSED_REQUEST_FILTER)
