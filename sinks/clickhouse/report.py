"""The shipped queries (``queries/*.sql``) and how ``spendwatch report`` shows them.

Each file starts with ``--`` comment lines: the first is the title, the rest describe it.
Every query takes the parameters ``{since:DateTime64(3, 'UTC')}`` and
``{until:DateTime64(3, 'UTC')}`` (ClickHouse server-side parameters: the same file runs in
``clickhouse-client --param_since=... --param_until=...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

from clickhouse_connect.driver.client import Client

#: The order ``spendwatch report`` shows them in.
REPORT_ORDER = (
    "total_spend", "spend_by_day", "spend_by_team", "spend_by_model", "spend_by_tier", "top_keys",
    "top_sessions", "session_cost_quantiles", "cache_hit_by_key", "cost_per_outcome",
    "alerts_by_detector", "alert_episodes",
)
#: Columns shown shortened in the terminal (``spendwatch query --format csv`` gives them whole).
SHORTENED_COLUMNS = frozenset({"key"})
ALL_TIME = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    description: str
    sql: str


@dataclass(frozen=True)
class ReportResult:
    report: Report
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def available_reports() -> dict[str, Report]:
    """Every shipped query, by name (the file name without ``.sql``), in :data:`REPORT_ORDER`."""
    found: dict[str, Report] = {}
    for entry in resources.files(__package__).joinpath("queries").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        sql = entry.read_text(encoding="utf-8")
        comments = [line[2:].strip() for line in sql.splitlines() if line.startswith("--")]
        title, _, first = (comments[0] if comments else entry.name).partition(":")
        description = " ".join([first.strip(), *comments[1:]]).strip()
        description = description[:1].upper() + description[1:]
        name = entry.name[:-4]
        found[name] = Report(name, title.strip(), description, sql)
    order = {name: i for i, name in enumerate(REPORT_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def relative_span(value: str) -> timedelta | None:
    """The span of a relative time (``7d``, ``24h``, ``30m``), or ``None`` for a date.

    >>> relative_span("7d"), relative_span("2026-11-01")
    (datetime.timedelta(days=7), None)
    """
    relative = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if not relative:
        return None
    amount, unit = int(relative.group(1)), relative.group(2)
    return {"d": timedelta(days=amount), "h": timedelta(hours=amount), "m": timedelta(minutes=amount)}[unit]


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """``2026-11-01``, ``2026-11-01T12:00``, or relative to now: ``7d``, ``24h``, ``30m``.

    >>> parse_time("2026-11-01")
    datetime.datetime(2026, 11, 1, 0, 0, tzinfo=datetime.timezone.utc)
    >>> parse_time("2d", now=datetime(2026, 11, 3, tzinfo=UTC))
    datetime.datetime(2026, 11, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if (span := relative_span(value)) is not None:
        return (now or datetime.now(UTC)) - span
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not a time: {value!r} (use 2026-11-01, 2026-11-01T12:00 or 7d / 24h / 30m)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def run_report(client: Client, report: Report, since: datetime | None = None,
               until: datetime | None = None) -> ReportResult:
    params = {"since": since or ALL_TIME[0], "until": until or ALL_TIME[1]}
    result = client.query(report.sql, parameters=params)
    return ReportResult(report, tuple(result.column_names), result.result_rows)


def format_cell(value: Any) -> str:
    """How a value reads in a terminal table: dollars to 6 decimals, ratios to at most 3.

    >>> format_cell(Decimal("1234.5678901234")), format_cell(0.5), format_cell(12345)
    ('1,234.567890', '0.5', '12,345')
    """
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return f"{value:,.6f}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, tuple)):
        return ", ".join(format_cell(v) for v in value)
    return str(value)


def print_table(console, table) -> None:
    """Print a table whole: on a terminal too narrow for it, wider than the terminal (up to 160
    columns) rather than squeezing text columns to nothing."""
    from rich.measure import Measurement

    from rich.console import Console

    natural = Measurement.get(console, console.options.update_width(1000), table).maximum
    if natural > console.width:
        console = Console(width=min(natural, 160), file=console.file, force_terminal=console.is_terminal)
    console.print(table)


def render(result: ReportResult):  # -> rich.table.Table
    from rich.table import Table

    table = Table(title=result.report.title, caption=result.report.description or None, title_justify="left")
    if not result.rows:
        table.add_column("(no rows in this window)")
        return table
    cells = [[format_cell(v) for v in row] for row in result.rows]
    for i, column in enumerate(result.columns):
        numeric = any(isinstance(r[i], (int, float, Decimal)) for r in result.rows[:20])
        if numeric:
            table.add_column(column, justify="right", no_wrap=True)
        elif column in SHORTENED_COLUMNS:  # key hashes: the first characters identify them
            table.add_column(column, no_wrap=True, max_width=12, overflow="ellipsis")
        else:
            table.add_column(column, overflow="fold")
    for row in cells:
        table.add_row(*row)
    return table
