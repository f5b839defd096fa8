"""Insert throughput of the sink's batched writes, against a plain JSONEachRow insert in the same run.

    python -m spendwatch.benchmarks.clickhouse_sink --rows 200000 --batch 50000

Both paths write the same generated events into a freshly migrated ``events`` table (with its
materialized views) on embedded chDB in a temporary directory:

* ``sink path``: GatewayEvent -> row tuples (:func:`~.rows.event_row`) -> ``client.insert``
  (clickhouse-connect's columnar Native format), the exact code the sink runs per batch;
* ``insert only``: the same, rows converted beforehand;
* ``reference``: the same rows pre-serialised as JSONEachRow bytes, sent with ``raw_insert``.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from decimal import Decimal

import orjson

from spendwatch.schemas.event import GatewayEvent
from spendwatch.traffic import generate

from spendwatch.sinks.clickhouse import rows as R
from spendwatch.sinks.clickhouse.client import get_client
from spendwatch.sinks.clickhouse.config import ClickHouseConfig
from spendwatch.sinks.clickhouse.migrate import migrate


def _events(n: int) -> list[GatewayEvent]:
    base = [r for r in generate(days=1, seed=5, keys=40, teams=4, incidents="none") if isinstance(r, GatewayEvent)]
    return [e.model_copy(update={"event_id": f"{e.event_id}-{i}"})
            for i, e in zip(range(n), itertools.cycle(base), strict=False)]


def _json_line(row: tuple) -> bytes:
    record = dict(zip(R.EVENT_COLUMNS, row, strict=True))
    record["event_time"] = record["event_time"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return orjson.dumps(record, default=lambda v: str(v) if isinstance(v, Decimal) else repr(v))


def _timed(label: str, n: int, fn) -> float:
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    print(f"{label:<42} {n:>9,} rows  {seconds:7.2f} s  {n / seconds:>12,.0f} rows/s")
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=50_000, help="rows per insert (the sink's batch_max_rows)")
    args = parser.parse_args()

    events = _events(args.rows)
    batches = [events[i:i + args.batch] for i in range(0, len(events), args.batch)]
    with tempfile.TemporaryDirectory() as data_dir:
        clients = {}
        for name in ("sink_path", "insert_only", "reference"):
            clients[name] = get_client(ClickHouseConfig(database=f"bench_{name}"), data_dir)
            migrate(clients[name])
        columns = list(R.EVENT_COLUMNS)

        def sink_path() -> None:
            for batch in batches:
                rows = [R.event_row(e, "events", 0, i) for i, e in enumerate(batch)]
                clients["sink_path"].insert("events", rows, column_names=columns)

        converted = [[R.event_row(e, "events", 0, i) for i, e in enumerate(batch)] for batch in batches]

        def insert_only() -> None:
            for rows in converted:
                clients["insert_only"].insert("events", rows, column_names=columns)

        payloads = [b"\n".join(_json_line(r) for r in rows) for rows in converted]

        def reference() -> None:
            for payload in payloads:
                clients["reference"].raw_insert("events", column_names=columns, insert_block=payload,
                                                fmt="JSONEachRow")

        print(f"chDB, {args.rows:,} events in batches of {args.batch:,}, into events + its 3 materialized views")
        sink = _timed("sink path (model -> rows -> Native insert)", args.rows, sink_path)
        only = _timed("insert only (rows -> Native insert)", args.rows, insert_only)
        ref = _timed("reference (JSONEachRow bytes, raw_insert)", args.rows, reference)
        print(f"insert only / reference: {only / ref:.2f}x   sink path / reference: {sink / ref:.2f}x")
        totals = {name: c.query("SELECT count(), sum(cost_usd) FROM events").result_rows[0]
                  for name, c in clients.items()}
        assert len(set(totals.values())) == 1, f"the three paths stored different data: {totals}"
        print(f"all three stored {totals['reference'][0]:,} rows, spend {totals['reference'][1]} USD")
        for c in clients.values():
            c.close()


if __name__ == "__main__":
    main()
