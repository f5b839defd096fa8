"""Queries against an embedded chDB while the sink runs.

chDB lets one process open a data directory; the running sink is that process, so
``spendwatch report`` / ``query`` from another shell failed with ``Cannot lock file .../chdb/status``.
The sink therefore answers read-only queries on a loopback HTTP endpoint, and leaves its address
and a random token in ``data_dir/sink-query.json`` (mode 0600) while it runs; the commands find the
file and send their SQL there (:class:`LiveQueryClient`), with the same results as a local client.
A ClickHouse server (``clickhouse.url``) needs none of this.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

#: Where a running sink says how to reach it, under data_dir.
ENDPOINT_FILE = "sink-query.json"


def encode(value: Any) -> Any:
    """A JSON-safe value that :func:`decode` turns back into the same Python value (money stays Decimal).

    >>> decode(encode([Decimal("1.50"), datetime(2026, 11, 2, 9, 30), {"k": date(2026, 11, 2)}, None, 3]))
    [Decimal('1.50'), datetime.datetime(2026, 11, 2, 9, 30), {'k': datetime.date(2026, 11, 2)}, None, 3]
    """
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, text), = value.items()
            if tag == "$decimal":
                return Decimal(text)
            if tag == "$datetime":
                return datetime.fromisoformat(text)
            if tag == "$date":
                return date.fromisoformat(text)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


Runner = Callable[[str, dict[str, Any] | None], Awaitable[tuple[list[str], list[tuple[Any, ...]]]]]


@contextlib.asynccontextmanager
async def serve_queries(run: Runner, data_dir: Path) -> AsyncIterator[str]:
    """Serve ``POST /query`` on a free loopback port for as long as the block runs; yields its URL.

    ``run(sql, parameters)`` executes one read-only query and returns ``(columns, rows)``.
    """
    token = secrets.token_urlsafe(24)

    async def query(request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            body = await request.json()
            columns, rows = await run(str(body["sql"]), decode(body.get("parameters")) or None)
        except Exception as exc:  # the SQL was wrong: say so to the caller, keep serving
            return web.json_response({"error": str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)},
                                     status=400)
        payload = orjson.dumps({"columns": columns, "rows": encode(rows)}, default=str)
        return web.Response(body=payload, content_type="application/json")

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/query", query)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    path = Path(data_dir) / ENDPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token, "pid": os.getpid()}, f)
    try:
        yield url
    finally:
        with contextlib.suppress(FileNotFoundError):
            if json.loads(path.read_text()).get("token") == token:  # not a newer sink's file
                path.unlink()
        await runner.cleanup()


@dataclass(frozen=True)
class LiveResult:
    column_names: tuple[str, ...]
    result_rows: list[tuple[Any, ...]]


class LiveQueryError(RuntimeError):
    """The running sink could not run the query (bad SQL, a statement that writes)."""


@dataclass
class LiveQueryClient:
    """Sends queries to the running sink: the part of clickhouse-connect's client the commands use."""

    url: str
    token: str
    timeout: float = 300.0

    @classmethod
    def find(cls, data_dir: Path) -> LiveQueryClient | None:
        """The running sink's endpoint for ``data_dir``, if one answers."""
        try:
            found = json.loads((Path(data_dir) / ENDPOINT_FILE).read_text())
            client = cls(found["url"], found["token"], timeout=5.0)
            client.query("SELECT 1")
        except (OSError, ValueError, KeyError, LiveQueryError):
            return None  # no sink running, or a file left by one that died
        client.timeout = 300.0
        return client

    def query(self, sql: str, parameters: dict[str, Any] | None = None, **_: Any) -> LiveResult:
        body = orjson.dumps({"sql": sql, "parameters": encode(parameters or {})}, default=str)
        request = urllib.request.Request(f"{self.url}/query", data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 - loopback URL
                data = orjson.loads(answer.read())
        except urllib.error.HTTPError as exc:
            try:
                reason = orjson.loads(exc.read()).get("error", str(exc))
            except orjson.JSONDecodeError:
                reason = str(exc)
            raise LiveQueryError(reason) from None
        return LiveResult(tuple(data["columns"]), [tuple(decode(r)) for r in data["rows"]])

    def command(self, *_: Any, **__: Any) -> Any:
        raise LiveQueryError("the running sink holds the embedded chDB and answers read-only queries only; "
                             "stop it for schema changes (it applies the migrations itself when it starts)")

    def close(self) -> None:
        return None
