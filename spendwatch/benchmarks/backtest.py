"""Benchmark: events per second of :func:`run_backtest` against a reference loop, same run.

    python -m spendwatch.benchmarks.backtest [--events 200000] [--keys 200] [--days 14] [--workers 2]

The reference is the least any replay must do: walk the same records in event-time order
and sum each key's cost in a dict. Both are timed on already-parsed records (the engine's
own cost), then end to end from canonical JSON lines (parse + replay), since parsing is
shared by both and usually dominates.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from spendwatch.detectors.backtest import run_backtest, run_backtest_parallel
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.event import GatewayEvent

MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4", "claude-opus-4", "gemini-2.5-flash")


def synthetic(events: int, keys: int, days: int) -> list[GatewayEvent]:
    """Deterministic multi-key traffic: office-hours seasonality, sessions, a few tags."""
    start = datetime(2026, 11, 2, tzinfo=UTC)
    span = days * 86400
    out = []
    for i in range(events):
        t = start + timedelta(seconds=(i * span) // events)
        key = (i * 7919) % keys
        busy = t.weekday() < 5 and 9 <= t.hour < 18
        out.append(GatewayEvent(
            event_id=f"e{i}", event_time=t, gateway="litellm", api_key_hash=f"key-{key}", team=f"team-{key % 9}",
            user=f"user-{key % 50}", session_id=f"s-{key}-{i // 40}", model=MODELS[(i // 3 + key) % len(MODELS)],
            tags=(f"app-{key % 4}",), cost_usd=Decimal(((i * 31) % 97 + 1) * (30 if busy else 6)) / 100_000,
            input_tokens=1200, output_tokens=300,
        ))
    return out


def reference(records: list[GatewayEvent]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for r in sorted(records, key=lambda r: r.event_time):
        key = r.api_key_hash or ""
        totals[key] = totals.get(key, 0) + int((r.cost_usd or 0) * 1_000_000)
    return totals


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} events/s ({seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--workers", type=int, default=2, help="Also time the sharded replay with this many processes.")
    args = parser.parse_args()

    from spendwatch.gc_tuning import tune_for_long_lived_state
    from spendwatch.schemas.adapters import dumps, parse_message

    tune_for_long_lived_state()  # as `spendwatch backtest` does
    records = synthetic(args.events, args.keys, args.days)
    lines = [dumps(r) for r in records]
    config = DetectorsConfig()
    print(f"{args.events:,} events, {args.keys} keys, {args.days} days; detectors: "
          f"{', '.join(n for n, s in config.detector_settings().items() if s.enabled)}")

    t = time.perf_counter()
    reference(records)
    ref = time.perf_counter() - t
    t = time.perf_counter()
    alerts = sum(1 for _ in run_backtest(records, config))
    engine = time.perf_counter() - t
    print(f"parsed records   reference (sort + dict-sum per key): {_rate(args.events, ref)}")
    print(f"parsed records   run_backtest:                        {_rate(args.events, engine)}  "
          f"{alerts} notifications, {engine / ref:.1f}x the reference time")

    if args.workers > 1:
        t = time.perf_counter()
        sharded = sum(1 for _ in run_backtest_parallel(records, config, workers=args.workers))
        seconds = time.perf_counter() - t
        print(f"parsed records   run_backtest_parallel, {args.workers} workers:     {_rate(args.events, seconds)}  "
              f"{sharded} notifications")

    t = time.perf_counter()
    reference([rec for line in lines for rec in parse_message(line)])
    ref_e2e = time.perf_counter() - t
    t = time.perf_counter()
    sum(1 for _ in run_backtest([rec for line in lines for rec in parse_message(line)], config))
    e2e = time.perf_counter() - t
    print(f"from JSON lines  reference (parse + dict-sum):        {_rate(args.events, ref_e2e)}")
    print(f"from JSON lines  parse + run_backtest:                {_rate(args.events, e2e)}")


if __name__ == "__main__":
    main()
