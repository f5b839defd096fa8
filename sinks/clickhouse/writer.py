"""Batched inserts that survive a ClickHouse outage: retried with backoff, idempotent on retry.

Every insert carries an ``insert_deduplication_token`` derived from the Kafka offsets of its
rows, so a retry of an insert that did land (a timeout after the server committed it, a crash
between parts) is dropped by ClickHouse instead of counted twice -- in the table and in the
materialized views it feeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from spendwatch.metrics import CLICKHOUSE_ROWS, CLICKHOUSE_WRITE_SECONDS

from .config import ClickHouseConfig
from .rows import TableSpec

log = logging.getLogger(__name__)

#: (topic, partition, first offset, last offset) of the records behind one insert.
OffsetRange = tuple[str, int, int, int]


def batch_spec(ranges: Sequence[OffsetRange]) -> str:
    """The canonical name of the Kafka records behind one insert, stored on its rows as ``kafka_batch``.

    >>> batch_spec([("ev", 1, 10, 19), ("ev", 0, 5, 7)])
    'ev:0:5-7;ev:1:10-19'
    >>> parse_batch_spec(batch_spec([("ev", 1, 10, 19), ("ev", 0, 5, 7)]))
    [('ev', 0, 5, 7), ('ev', 1, 10, 19)]
    """
    return ";".join(f"{t}:{p}:{lo}-{hi}" for t, p, lo, hi in sorted(ranges))


def parse_batch_spec(spec: str) -> list[OffsetRange]:
    ranges = []
    for part in spec.split(";"):
        topic, partition, span = part.rsplit(":", 2)
        lo, hi = span.split("-")
        ranges.append((topic, int(partition), int(lo), int(hi)))
    return ranges


def dedup_token(table: str, ranges: Sequence[OffsetRange]) -> str:
    """A token naming exactly which Kafka records an insert holds (order of ``ranges`` irrelevant).

    >>> dedup_token("events", [("ev", 1, 10, 19), ("ev", 0, 5, 7)]) == dedup_token("events", [("ev", 0, 5, 7), ("ev", 1, 10, 19)])
    True
    """
    return hashlib.sha256(f"{table}|{batch_spec(ranges)}".encode()).hexdigest()


class ClickHouseWriter:
    """Serialises all ClickHouse calls of one sink onto worker threads, reconnecting after failures.

    Parameters
    ----------
    client_factory
        Opens a client (see :func:`spendwatch.sinks.clickhouse.client.get_client`); called again
        after a failed call, so a restarted server or a new chDB session is picked up.
    config
        Backoff settings.
    """

    def __init__(self, client_factory: Callable[[], Client], config: ClickHouseConfig):
        self._factory = client_factory
        self._config = config
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self.failures = 0

    def _connected(self) -> Client:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - already failing; the next call reconnects
                log.debug("closing a failed ClickHouse client raised", exc_info=True)

    async def call(self, fn: Callable[[Client], Any]) -> Any:
        """Run ``fn(client)`` on a worker thread, one call at a time; no retry."""
        async with self._lock:
            try:
                return await asyncio.to_thread(lambda: fn(self._connected()))
            except Exception:
                self._drop_client()
                raise

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return await self.call(lambda c: c.query(sql, parameters=parameters).result_rows)

    async def read_only(self, sql: str, parameters: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """``(columns, rows)`` of a query someone else sent (``spendwatch report`` / ``query`` through
        :mod:`~spendwatch.sinks.clickhouse.live`): run read-only, one call at a time with the inserts; a bad
        query is the caller's error and keeps the client."""
        def run() -> tuple[list[str], list[tuple[Any, ...]]]:
            result = self._connected().query(sql, parameters=parameters, settings={"readonly": 2})
            return list(result.column_names), result.result_rows

        async with self._lock:
            return await asyncio.to_thread(run)

    async def insert(self, table: TableSpec, rows: list[tuple[Any, ...]], ranges: Sequence[OffsetRange]) -> None:
        """Insert ``rows`` as one batch, retrying with exponential backoff until it lands.

        Cancelling the calling task is the only way to give up (the rows are then re-read
        from Kafka by whoever resumes the partitions).
        """
        spec = batch_spec(ranges)
        # Same rows in the same order on every attempt (and on a replay after a crash), so the
        # per-partition parts ClickHouse derives from one token are the same parts each time.
        rows = [(*row, spec) for row in sorted(rows, key=lambda r: (r[-2], r[-1]))]
        columns = [*table.columns, "kafka_batch"]
        settings = {
            "insert_deduplication_token": dedup_token(table.name, ranges),
            "insert_deduplicate": 1,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        }
        backoff = self._config.retry_initial_backoff_s
        while True:
            started = time.perf_counter()
            try:
                await self.call(lambda c: c.insert(table.name, rows, column_names=columns, settings=settings))
            except Exception as exc:  # noqa: BLE001 - any failure is retried; the data stays in memory
                self.failures += 1
                log.warning("ClickHouse insert of %d rows into %s failed (%s: %s); retrying in %.1fs",
                            len(rows), table.name, type(exc).__name__, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._config.retry_max_backoff_s)
                continue
            CLICKHOUSE_WRITE_SECONDS.labels(table.name).observe(time.perf_counter() - started)
            CLICKHOUSE_ROWS.labels(table.name).inc(len(rows))
            return

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._drop_client)
