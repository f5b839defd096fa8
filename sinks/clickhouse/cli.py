"""``spendwatch db``, ``report``, ``query`` and ``sink``."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import signal
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import click
import orjson

from spendwatch.web import metrics_port_option, observability_server

config_option = click.option(
    "--config", "-c", "config_path", envvar="SPENDWATCH_CONFIG", type=click.Path(exists=True, dir_okay=False),
    help="spendwatch YAML config (env SPENDWATCH_CONFIG). Default: all defaults (embedded chDB under data_dir).",
)


def _settings(config_path: str | None):
    from spendwatch.config import ConfigError, load_settings

    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@contextlib.contextmanager
def _client(config_path: str | None) -> Iterator[Any]:
    """A client for the command, closed after it (chDB binds one data path per process while open)."""
    from .client import get_client

    settings = _settings(config_path)
    try:
        client = get_client(settings.clickhouse, settings.data_dir)
    except Exception as exc:
        where = settings.clickhouse.url or f"chDB in {settings.data_dir}/chdb"
        hint = " (another process, e.g. a running sink or demo, may hold the chDB directory)" \
            if settings.clickhouse.url is None else ""
        raise click.ClickException(f"cannot open ClickHouse at {where}: {exc}{hint}") from exc
    try:
        yield client
    finally:
        client.close()


@click.group("db")
def db() -> None:
    """ClickHouse schema: migrate, status."""


@db.command("migrate")
@config_option
def db_migrate(config_path: str | None) -> None:
    """Apply pending schema migrations and the configured retention (idempotent)."""
    from .migrate import migrate

    with _client(config_path) as client:
        applied = migrate(client, _settings(config_path).clickhouse)
    for m in applied:
        click.echo(f"applied {m.version:03d}_{m.name}")
    click.echo("schema up to date" if not applied else f"{len(applied)} migration(s) applied")


@db.command("status")
@config_option
def db_status(config_path: str | None) -> None:
    """Show each migration and whether it is applied."""
    from .migrate import status

    with _client(config_path) as client:
        statuses = status(client)
    for s in statuses:
        state = "pending" if s.applied_at is None else f"applied {s.applied_at:%Y-%m-%d %H:%M:%S}"
        drift = "  (file changed since applied)" if s.checksum_matches is False else ""
        click.echo(f"{s.version:03d}_{s.name:<20} {state}{drift}")


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    from .report import parse_time, relative_span

    if value is None:
        return None
    try:
        parsed = parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if param.name == "since" and (span := relative_span(value)) is not None:
        ctx.meta["since_span"] = (value.strip(), span)
    return parsed


def _anchor_to_data(client: Any, since: datetime, until: datetime | None, value: str, span: Any,
                    console: Any) -> tuple[datetime, datetime | None]:
    """A relative ``--since`` over data that ends before it (the demo's week, a stopped pipeline) counts back
    from the latest event instead of showing empty tables, and says so."""
    if until is not None:
        return since, until
    latest = client.query("SELECT max(event_time), count() FROM events").result_rows[0]
    last, count = latest[0], latest[1]
    if not count or last is None:
        return since, until
    last = last if last.tzinfo else last.replace(tzinfo=since.tzinfo)
    if last >= since:
        return since, until
    console.print(f"[yellow]No events in the last {value}; the latest is at {last:%Y-%m-%d %H:%M} UTC: showing the "
                  f"{value} up to it.[/yellow] (--since/--until with dates choose any window.)")
    return last - span, last + timedelta(milliseconds=1)


@click.command("report")
@click.argument("name", required=False)
@click.option("--since", callback=_time, help="Start (inclusive): 2026-11-01, 2026-11-01T12:00, or 7d / 24h ago "
              "(counted back from the latest event when the data ends before that, e.g. the demo's past week).")
@click.option("--until", callback=_time, help="End (exclusive), same forms. Default: now and beyond.")
@click.option("--list", "list_only", is_flag=True, help="List the reports and exit.")
@click.option("--sql", "show_sql", is_flag=True, help="Print each report's SQL under its table.")
@config_option
@click.pass_context
def report(ctx: click.Context, name: str | None, since: datetime | None, until: datetime | None, list_only: bool,
           show_sql: bool, config_path: str | None) -> None:
    """Spend reports as terminal tables: NAME, or all of them (see --list)."""
    from rich.console import Console
    from rich.syntax import Syntax

    from .report import available_reports, print_table, render, run_report

    reports = available_reports()
    console = Console(soft_wrap=True)
    if list_only:
        for r in reports.values():
            console.print(f"[bold]{r.name}[/bold]  {r.title}")
        return
    if name is not None and name not in reports:
        raise click.BadParameter(f"unknown report {name!r}; one of: {', '.join(reports)}", param_hint="NAME")
    with _client(config_path) as client:
        if since is not None and "since_span" in ctx.meta:
            since, until = _anchor_to_data(client, since, until, *ctx.meta["since_span"], console)
        for r in ([reports[name]] if name else list(reports.values())):
            try:
                result = run_report(client, r, since, until)
            except Exception as exc:
                raise click.ClickException(f"report {r.name} failed: {exc}") from exc
            print_table(console, render(result))
            if show_sql:
                console.print(Syntax(r.sql, "sql", theme="ansi_dark"))
            console.print()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@click.command("query")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A query parameter, for {NAME:Type} placeholders. Repeatable.")
@config_option
def query(sql: str, fmt: str, params: tuple[str, ...], config_path: str | None) -> None:
    """Run any SQL against spendwatch's ClickHouse ('-' reads it from stdin)."""
    if sql == "-":
        sql = sys.stdin.read()
    parameters = {}
    for p in params:
        key, sep, value = p.partition("=")
        if not sep:
            raise click.BadParameter(f"{p!r} is not NAME=VALUE", param_hint="--param")
        parameters[key] = value
    with _client(config_path) as client:
        try:
            result = client.query(sql, parameters=parameters or None)
        except Exception as exc:
            message = str(exc).strip()
            raise click.ClickException(message.splitlines()[0] if message else repr(exc)) from exc
    columns, rows = list(result.column_names), result.result_rows
    if not columns:  # a statement (INSERT, ALTER...), not a query
        click.echo("ok", err=True)
        return
    if fmt == "json":
        click.echo(orjson.dumps([dict(zip(columns, map(_plain, r), strict=True)) for r in rows],
                                option=orjson.OPT_INDENT_2, default=str).decode())
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([[_plain(v) for v in r] for r in rows])
        click.echo(out.getvalue(), nl=False)
    else:
        from rich.console import Console

        from .report import Report, ReportResult, print_table, render

        print_table(Console(), render(ReportResult(Report("query", "", "", sql), tuple(columns), rows)))


@click.command("sink")
@click.option("--bootstrap-servers", help="Kafka bootstrap servers (default: kafka.bootstrap_servers).")
@config_option
@metrics_port_option
def sink(bootstrap_servers: str | None, config_path: str | None, metrics_port: int | None = None) -> None:
    """Run the ClickHouse sink alone: events, outcomes and alerts topics -> ClickHouse."""
    from .service import ClickHouseSink

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(config_path)

    async def main() -> None:
        try:
            service = ClickHouseSink(settings, bootstrap_servers=bootstrap_servers)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.request_stop)
        async with observability_server(metrics_port) as server:  # /metrics, /healthz, /readyz
            if server is not None:
                server.checks.add_readiness_check("kafka", lambda: (bool(service._tasks), "not consuming yet"))
            await service.run()

    asyncio.run(main())
