"""The one place a ClickHouse client is made: embedded chDB or a server over HTTP.

Both are clickhouse-connect clients with the same API, so everything else in this package
runs unchanged on either.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from .config import ClickHouseConfig


def chdb_path(data_dir: str | Path) -> Path:
    """Where embedded chDB keeps its data for a spendwatch ``data_dir``."""
    return Path(data_dir) / "chdb"


def get_client(config: ClickHouseConfig, data_dir: str | Path, *, with_database: bool = True) -> Client:
    """Open a client: chDB under ``<data_dir>/chdb`` when ``config.url`` is unset, else the server.

    Parameters
    ----------
    config
        The ``clickhouse`` section of the settings.
    data_dir
        spendwatch's data directory (only used for chDB).
    with_database
        Make ``config.database`` the session's current database, creating it first if needed,
        so the SQL in ``migrations/`` and ``queries/`` uses unqualified table names.
    """
    if config.url is None:
        path = chdb_path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(interface="chdb", path=str(path))
        if with_database:
            client.command(f"CREATE DATABASE IF NOT EXISTS {config.database}")
            client.close()
            client = clickhouse_connect.get_client(interface="chdb", path=str(path), database=config.database)
        return client

    url = urlparse(config.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"clickhouse.url must be http(s)://host:port, got {config.url!r}")
    server = dict(
        host=url.hostname,
        port=url.port or (8443 if url.scheme == "https" else 8123),
        secure=url.scheme == "https",
        username=config.username,
        password=os.environ.get(config.password_env, ""),
        connect_timeout=config.connect_timeout_s,
        send_receive_timeout=config.send_receive_timeout_s,
    )
    if not with_database:
        return clickhouse_connect.get_client(**server)
    bootstrap = clickhouse_connect.get_client(**server)
    try:
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {config.database}")
    finally:
        bootstrap.close()
    return clickhouse_connect.get_client(database=config.database, **server)
