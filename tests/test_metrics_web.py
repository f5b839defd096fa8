"""/metrics, /healthz and /readyz over real HTTP, on the aiohttp and Faust mounts."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from spendwatch import metrics
from spendwatch.broker import free_port
from spendwatch.web import HealthChecks, add_faust_observability_routes, start_observability_server

#: Every family spendwatch.metrics defines, as the exposition names it (counters lose "_total").
EXPECTED_FAMILIES = {
    "spendwatch_events_in", "spendwatch_dead_letters", "spendwatch_consumer_lag_messages",
    "spendwatch_detector_batch_seconds", "spendwatch_alerts", "spendwatch_pages_sent", "spendwatch_pages_failed",
    "spendwatch_clickhouse_write_seconds", "spendwatch_clickhouse_backlog_rows",
    "spendwatch_clickhouse_rows_written", "spendwatch_ingest_requests",
}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_metrics_endpoint_serves_every_family_and_tracks_changes():
    server = await start_observability_server("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            status, content_type, before = await _get(session, f"{server.url}/metrics")
            assert status == 200
            assert content_type.startswith("text/plain")
            families = {f.name for f in text_string_to_metric_families(before)}
            assert EXPECTED_FAMILIES <= families
            assert "process_resident_memory_bytes" in families

            key = ("spendwatch_events_in_total", (("result", "ok"), ("source", "test-scrape")))
            lag_key = ("spendwatch_consumer_lag_messages", (("group", "g"), ("partition", "0"), ("topic", "test-scrape")))
            start = _samples(before).get(key, 0.0)
            metrics.EVENTS_IN.labels(source="test-scrape", result="ok").inc(3)
            metrics.CONSUMER_LAG.labels(group="g", topic="test-scrape", partition="0").set(42)
            metrics.DETECTOR_LATENCY.observe(0.003)

            _, _, after = await _get(session, f"{server.url}/metrics")
            samples = _samples(after)
            assert samples[key] == start + 3
            assert samples[lag_key] == 42
            assert samples[("spendwatch_detector_batch_seconds_count", ())] >= 1
    finally:
        await server.stop()


async def test_readyz_reports_failing_checks_by_name_and_recovers():
    checks = HealthChecks()
    checks.set_ready("kafka", False, "no partitions assigned")
    server = await start_observability_server("127.0.0.1", free_port(), checks)
    try:
        async with aiohttp.ClientSession() as session:
            status, _, body = await _get(session, f"{server.url}/readyz")
            assert status == 503
            assert "no partitions assigned" in body
            status, _, _ = await _get(session, f"{server.url}/healthz")
            assert status == 200  # not ready is not dead

            checks.set_ready("kafka", True)
            status, _, body = await _get(session, f"{server.url}/readyz")
            assert status == 200
            assert '"kafka":"ok"' in body.replace(" ", "")
    finally:
        await server.stop()


async def test_a_broken_or_hanging_check_fails_without_breaking_the_endpoint(monkeypatch):
    monkeypatch.setattr("spendwatch.web.CHECK_TIMEOUT_S", 0.05)
    checks = HealthChecks()

    def broken() -> bool:
        raise RuntimeError("boom")

    async def hanging() -> bool:
        await asyncio.Event().wait()
        return True

    checks.add_liveness_check("broken", broken)
    checks.add_liveness_check("hanging", hanging)
    ok, report = await checks.liveness()
    assert not ok
    assert report["broken"] == "RuntimeError: boom"
    assert report["hanging"].startswith("TimeoutError")


async def test_faust_app_serves_the_same_endpoints():
    import faust

    app = faust.App("spendwatch-web-test", broker="kafka://127.0.0.1:1", web_enabled=True)
    checks = add_faust_observability_routes(app)
    checks.set_ready("recovery", False, "recovering tables")
    metrics.PAGES_SENT.labels(receiver="faust-test").inc()

    runner = web.AppRunner(app.web.web_app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            status, content_type, text = await _get(session, f"http://127.0.0.1:{port}/metrics")
            assert status == 200 and content_type.startswith("text/plain")
            assert _samples(text)[("spendwatch_pages_sent_total", (("receiver", "faust-test"),))] >= 1
            status, _, body = await _get(session, f"http://127.0.0.1:{port}/readyz")
            assert status == 503 and "recovering tables" in body
            status, _, _ = await _get(session, f"http://127.0.0.1:{port}/healthz")
            assert status == 200
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
async def test_only_get_is_served(path):
    server = await start_observability_server()
    try:
        async with aiohttp.ClientSession() as session, session.post(f"{server.url}{path}") as resp:
            assert resp.status == 405
    finally:
        await server.stop()


async def test_observability_server_context_serves_only_while_open():
    port = free_port()
    async with aiohttp.ClientSession() as session:
        from spendwatch.web import observability_server

        async with observability_server(None) as nothing:
            assert nothing is None
        async with observability_server(port, host="127.0.0.1") as server:
            server.checks.set_ready("kafka", True)
            status, _, _ = await _get(session, f"http://127.0.0.1:{port}/readyz")
            assert status == 200
        with pytest.raises(aiohttp.ClientConnectionError):
            await _get(session, f"http://127.0.0.1:{port}/readyz")


def test_metrics_port_option_reads_the_environment(monkeypatch):
    import click
    from click.testing import CliRunner

    from spendwatch.web import metrics_port_option

    @click.command()
    @metrics_port_option
    def cmd(metrics_port):
        click.echo(repr(metrics_port))

    assert CliRunner().invoke(cmd, []).output.strip() == "None"
    assert CliRunner().invoke(cmd, ["--metrics-port", "9108"]).output.strip() == "9108"
    monkeypatch.setenv("SPENDWATCH_METRICS_PORT", "9200")
    assert CliRunner().invoke(cmd, []).output.strip() == "9200"
