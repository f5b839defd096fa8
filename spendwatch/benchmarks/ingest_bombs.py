"""Ingest memory under concurrent gzip bombs: peak RSS of the server, with the in-flight cap and without.

Each bomb is a small gzip body that inflates to ``--inflate-mb`` (default 60 MB): ``batch`` (a
valid array of 10,000 LiteLLM payloads with long prompts, within every per-request limit),
``zeros`` (NUL bytes, ~60 KB on the wire), ``ndjson`` (one event line repeated) and ``array``
(a JSON array of ``{"a":1}``, the densest to parse). ``--concurrency`` bombs (default 8) are
posted at once, each kind against a fresh server process whose peak RSS (``VmHWM``) is read
after the last answer. The server is the real ingest application with a producer that
acknowledges after ``--ack-delay-s`` and discards the messages (Kafka is not what is measured,
but requests must overlap as they do while waiting for its acknowledgements).

The reference, measured in the same run, is the same server with no in-flight cap
(``ingest.max_inflight_body_bytes`` set to 1 TB), for ``batch`` and ``zeros`` only: the uncapped
``array`` bomb needs about 1.5 GB per request and could take the machine down::

    python -m spendwatch.benchmarks.ingest_bombs --concurrency 8 --inflate-mb 60
"""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import os
from collections import Counter
from typing import Any

import click

KINDS = ("batch", "zeros", "ndjson", "array")
REFERENCE_KINDS = ("batch", "zeros")
UNCAPPED = 1 << 40


def bomb(kind: str, size: int) -> bytes:
    """A gzip body inflating to about ``size`` bytes."""
    if kind == "batch":  # a valid batch within every per-request limit: 10,000 calls with long prompts
        import orjson

        from spendwatch.benchmarks.ingest_load import litellm_payload

        records = max(1, min(10_000, size // 6000))
        prompt = "y" * (size // records - 1500)
        body = orjson.dumps([{**litellm_payload(i), "messages": [{"role": "user", "content": prompt}]}
                             for i in range(records)])
    elif kind == "zeros":
        body = bytes(size)
    elif kind == "ndjson":
        line = (b'{"event_id":"e","event_time":"2026-12-01T00:00:00Z","gateway":"g","user":"u",'
                b'"model":"gpt-4o","cost_usd":"0.001"}\n')
        body = line * (size // len(line))
    else:
        body = b"[" + b'{"a":1},' * (size // 8) + b"{}]"
    return gzip.compress(body, 9)


class _DiscardingProducer:
    """Acknowledges after ``ack_delay_s`` (Kafka's acks=all round trip under load) and drops the messages."""

    def __init__(self, ack_delay_s: float) -> None:
        self.ack_delay_s = ack_delay_s
        self.connected = asyncio.Event()
        self.connected.set()

    async def send_all(self, messages: Any) -> None:
        await asyncio.sleep(self.ack_delay_s)


def _serve(limit: int, ack_delay_s: float, port_out: Any, stop: Any) -> None:
    from spendwatch.config import Settings
    from spendwatch.streams.ingest.config import IngestConfig
    from spendwatch.streams.ingest.server import IngestService, serve

    async def main() -> None:
        settings = Settings(ingest=IngestConfig(port=0, allow_unauthenticated=True, max_inflight_body_bytes=limit))
        runner, port = await serve(IngestService(settings, _DiscardingProducer(ack_delay_s), None), "127.0.0.1", 0)  # type: ignore[arg-type]
        port_out.send(port)
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        await runner.cleanup()

    asyncio.run(main())


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process, MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def _post_all(port: int, body: bytes, concurrency: int) -> Counter:
    from aiohttp import ClientSession

    async with ClientSession() as http:
        async def one() -> int:
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            async with http.post(f"http://127.0.0.1:{port}/v1/events", data=body, headers=headers) as resp:
                await resp.read()
                return resp.status
        return Counter(await asyncio.gather(*(one() for _ in range(concurrency))))


def measure(kind: str, limit: int, concurrency: int, size: int, ack_delay_s: float = 0.5) -> dict[str, Any]:
    """Start a server, post ``concurrency`` bombs of ``kind`` at once, and read its RSS."""
    ctx = multiprocessing.get_context("spawn")
    port_in, port_out = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(limit, ack_delay_s, port_out, stop), daemon=True)
    server.start()
    try:
        port = port_in.recv()
        idle, _ = _rss_mb(server.pid)
        body = bomb(kind, size)
        statuses = asyncio.run(_post_all(port, body, concurrency))
        current, peak = _rss_mb(server.pid)
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.kill()
    return {"kind": kind, "capped": limit != UNCAPPED, "wire_kb": len(body) / 1024, "idle_mb": idle,
            "peak_mb": peak, "after_mb": current, "statuses": dict(sorted(statuses.items()))}


@click.command()
@click.option("--concurrency", default=8, show_default=True, help="Bombs posted at once.")
@click.option("--inflate-mb", default=60, show_default=True, help="What each bomb inflates to, MB.")
@click.option("--kinds", default=",".join(KINDS), show_default=True, help="Bomb kinds, comma-separated.")
@click.option("--ack-delay-s", default=0.5, show_default=True, help="Simulated Kafka acknowledgement time.")
@click.option("--no-reference", is_flag=True, help="Skip the uncapped reference runs.")
def main(concurrency: int, inflate_mb: int, kinds: str, ack_delay_s: float, no_reference: bool) -> None:
    """Peak ingest RSS under concurrent gzip bombs, capped and (zeros only) uncapped."""
    from spendwatch.streams.ingest.config import IngestConfig

    cap = IngestConfig().max_inflight_body_bytes
    size = inflate_mb * 1_000_000
    runs = [(kind, cap) for kind in kinds.split(",")]
    if not no_reference:
        runs += [(kind, UNCAPPED) for kind in REFERENCE_KINDS if kind in kinds.split(",")]
    click.echo(f"{concurrency} concurrent gzip bombs inflating to {inflate_mb} MB each; "
               f"ingest.max_inflight_body_bytes = {cap / 1_048_576:.0f} MiB; cpu {os.cpu_count()}")
    click.echo(f"{'kind':8} {'cap':>9} {'wire KB':>8} {'idle MB':>8} {'peak MB':>8} {'after MB':>9}  statuses")
    for kind, limit in runs:
        r = measure(kind, limit, concurrency, size, ack_delay_s)
        label = f"{cap / 1_048_576:.0f} MiB" if r["capped"] else "none"
        click.echo(f"{kind:8} {label:>9} {r['wire_kb']:8.0f} {r['idle_mb']:8.0f} {r['peak_mb']:8.0f} "
                   f"{r['after_mb']:9.0f}  {r['statuses']}")


if __name__ == "__main__":
    main()
