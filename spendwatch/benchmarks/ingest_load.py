"""Load test of the ingest service on loopback, against a reference measured in the same run.

Two HTTP servers receive the *same* request bodies from the *same* client, which runs in
a separate process (so client and server do not share one event loop):

``reference``
    a bare aiohttp endpoint that reads each body and discards it: the cost of HTTP alone
    on this machine;
``ingest``
    the real service: authenticate, inflate, split, parse every record with the adapters,
    write canonical JSON to Kafka with ``acks=all`` and answer only once acknowledged.

The run is bounded in requests (``--requests``) and in time (``--max-seconds`` per target).
It prints sustained events per second and request latency percentiles for both::

    python -m spendwatch.benchmarks.ingest_load --requests 300 --batch 100 --concurrency 8

With no ``--bootstrap-servers`` it starts the embedded broker in a temporary directory.
"""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
import orjson
from aiohttp import ClientSession, TCPConnector, web

TOKEN = "loadtest-token-0123456789"


def litellm_payload(i: int) -> dict:
    """A LiteLLM StandardLoggingPayload of realistic shape (short prompt and response included)."""
    key = i % 200
    return {
        "id": f"chatcmpl-{i}", "litellm_call_id": f"call-{i:09d}", "trace_id": f"sess-{i % 1000}",
        "call_type": "acompletion", "cache_hit": None, "stream": False, "status": "success",
        "custom_llm_provider": "openai", "startTime": 1795442387.0 + i * 0.01, "endTime": 1795442388.2 + i * 0.01,
        "completionStartTime": 1795442388.0 + i * 0.01, "response_time": 1.2, "model": "gpt-4o-mini",
        "metadata": {
            "user_api_key_hash": f"{key:064x}", "user_api_key_alias": f"service-{key}",
            "user_api_key_user_id": f"user-{key % 50}", "user_api_key_team_id": f"team-{key % 7}",
            "user_api_key_org_id": "org-1", "spend_logs_metadata": None, "requester_ip_address": "10.0.0.1",
            "usage_object": {"completion_tokens": 180, "prompt_tokens": 1200, "total_tokens": 1380,
                             "prompt_tokens_details": {"cached_tokens": 256}},
        },
        "response_cost": 0.000288, "total_tokens": 1380, "prompt_tokens": 1200, "completion_tokens": 180,
        "request_tags": ["prod"], "api_base": "https://api.openai.com", "model_group": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are a helpful assistant." * 4},
                     {"role": "user", "content": "Summarise the ticket below in two lines. " * 6}],
        "response": {"choices": [{"message": {"role": "assistant", "content": "A short summary. " * 10}}]},
        "model_parameters": {"temperature": 0.2, "max_tokens": 512}, "hidden_params": {"api_base": "https://api.openai.com"},
    }


def make_bodies(requests: int, batch: int, *, compress: bool) -> list[bytes]:
    bodies = []
    for r in range(requests):
        lines = b"\n".join(orjson.dumps(litellm_payload(r * batch + i)) for i in range(batch))
        bodies.append(gzip.compress(lines, compresslevel=1) if compress else lines)
    return bodies


@dataclass
class RunStats:
    name: str
    requests: int
    events: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]


async def _client(url: str, bodies: list[bytes], batch: int, concurrency: int, compress: bool,
                  max_seconds: float) -> tuple[int, int, float, list[float]]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(bodies))
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker(http: ClientSession) -> None:
        nonlocal errors
        while queue and time.perf_counter() < deadline:
            body = queue.pop()
            t0 = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - t0) * 1000)

    async with ClientSession(connector=TCPConnector(limit=concurrency)) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return len(latencies), errors, time.perf_counter() - started, latencies


def _client_process(url: str, requests: int, batch: int, concurrency: int, compress: bool, max_seconds: float,
                    out: multiprocessing.Queue) -> None:
    bodies = make_bodies(requests, batch, compress=compress)
    out.put("ready")
    out.put(asyncio.run(_client(url, bodies, batch, concurrency, compress, max_seconds)))


def run_client(name: str, url: str, requests: int, batch: int, concurrency: int, compress: bool,
               max_seconds: float) -> RunStats:
    """Drive ``url`` from a separate process; bodies are built there before the clock starts."""
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    proc = ctx.Process(target=_client_process, args=(url, requests, batch, concurrency, compress, max_seconds, out))
    proc.start()
    try:
        assert out.get(timeout=120) == "ready"
        done, errors, seconds, latencies = out.get(timeout=max_seconds + 120)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
    return RunStats(name, done, (done - errors) * batch, errors, seconds, latencies)


async def _serve_reference(port: int) -> web.AppRunner:
    async def discard(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/events", discard)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _measure(bootstrap: str, requests: int, batch: int, concurrency: int, compress: bool,
                   max_seconds: float, partitions: int) -> list[RunStats]:
    from spendwatch.broker import create_topics, free_port
    from spendwatch.config import Settings
    from spendwatch.streams.config import KafkaConfig, TopicsConfig
    from spendwatch.streams.ingest.auth import GatewayTokens
    from spendwatch.streams.ingest.config import IngestConfig
    from spendwatch.streams.ingest.server import start_ingest

    prefix = f"loadtest-{int(time.time())}"
    topics = TopicsConfig(raw=f"{prefix}-raw", dead_letters=f"{prefix}-dead-letters")
    await create_topics(bootstrap, {topics.raw: partitions, topics.dead_letters: 1})
    settings = Settings(kafka=KafkaConfig(bootstrap_servers=bootstrap, topics=topics), ingest=IngestConfig(port=0))

    loop = asyncio.get_running_loop()
    reference_port = free_port()
    reference = await _serve_reference(reference_port)
    try:
        ref = await loop.run_in_executor(None, run_client, "reference (aiohttp, discard)",
                                         f"http://127.0.0.1:{reference_port}/v1/events",
                                         requests, batch, concurrency, compress, max_seconds)
    finally:
        await reference.cleanup()

    ingest = await start_ingest(settings, bootstrap, GatewayTokens({"loadtest": TOKEN}))
    try:
        real = await loop.run_in_executor(None, run_client, "spendwatch ingest (parse + Kafka acks=all)",
                                          f"{ingest.url}/v1/events", requests, batch, concurrency, compress,
                                          max_seconds)
    finally:
        await ingest.stop()
    return [ref, real]


def report(results: list[RunStats], batch: int, concurrency: int, compress: bool) -> str:
    reference = results[0]
    lines = [f"loopback, {batch} LiteLLM payloads per NDJSON request{' (gzip)' if compress else ''}, "
             f"{concurrency} concurrent requests, client in a separate process",
             f"{'target':<44} {'requests':>8} {'errors':>6} {'events/s':>10} {'p50 ms':>8} {'p95 ms':>8} "
             f"{'p99 ms':>8} {'vs ref':>7}"]
    for r in results:
        ratio = r.events_per_s / reference.events_per_s if reference.events_per_s else float("nan")
        lines.append(f"{r.name:<44} {r.requests:>8} {r.errors:>6} {r.events_per_s:>10,.0f} {r.percentile(50):>8.1f} "
                     f"{r.percentile(95):>8.1f} {r.percentile(99):>8.1f} {ratio:>7.2f}")
    return "\n".join(lines)


@click.command("ingest-loadtest")
@click.option("--requests", default=300, show_default=True, help="Requests per target (bounded).")
@click.option("--batch", default=100, show_default=True, help="Events per request (NDJSON lines).")
@click.option("--concurrency", default=8, show_default=True, help="Requests in flight.")
@click.option("--gzip/--no-gzip", "compress", default=True, show_default=True, help="gzip-encode the bodies.")
@click.option("--max-seconds", default=60.0, show_default=True, help="Time bound per target.")
@click.option("--partitions", default=8, show_default=True, help="Partitions of the raw topic.")
@click.option("--bootstrap-servers", default=None, help="Kafka to write to; default: a temporary embedded broker.")
def main(requests: int, batch: int, concurrency: int, compress: bool, max_seconds: float, partitions: int,
         bootstrap_servers: str | None) -> None:
    """Measure sustained ingest events/s and latency against a bare aiohttp reference."""
    from spendwatch.broker import EmbeddedBroker

    with tempfile.TemporaryDirectory(prefix="spendwatch-loadtest-") as tmp:
        broker = None
        if bootstrap_servers is None:
            broker = EmbeddedBroker(Path(tmp) / "kafka").start()
            bootstrap_servers = broker.bootstrap_servers
        try:
            results = asyncio.run(_measure(bootstrap_servers, requests, batch, concurrency, compress, max_seconds,
                                           partitions))
        finally:
            if broker is not None:
                broker.stop()
    click.echo(report(results, batch, concurrency, compress))


if __name__ == "__main__":
    main()
