"""Migrations, exact money, and every shipped report and CLI command, on chDB with generated traffic."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import yaml
from click.testing import CliRunner

from spendwatch.cli import cli
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.outcome import OutcomeEvent
from spendwatch.sinks.clickhouse import rows as R
from spendwatch.sinks.clickhouse.client import get_client
from spendwatch.sinks.clickhouse.config import ClickHouseConfig
from spendwatch.sinks.clickhouse.migrate import available_migrations, migrate, status
from spendwatch.sinks.clickhouse.report import available_reports, run_report
from spendwatch.traffic import generate


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """chDB migrated and loaded with one day of generated traffic (rows as the sink writes them)."""
    data_dir = tmp_path_factory.mktemp("chdb")
    client = get_client(ClickHouseConfig(), data_dir)
    migrate(client)
    records = list(generate(days=1, seed=3, keys=20, teams=3))
    events = [r for r in records if isinstance(r, GatewayEvent)]
    outcomes = [r for r in records if isinstance(r, OutcomeEvent)]
    client.insert("events", [R.event_row(e, "events", 0, i) for i, e in enumerate(events)],
                  column_names=list(R.EVENT_COLUMNS))
    client.insert("outcomes", [R.outcome_row(o, "outcomes", 0, i) for i, o in enumerate(outcomes)],
                  column_names=list(R.OUTCOME_COLUMNS))
    yield data_dir, client, events, outcomes
    client.close()


def test_migrations_are_versioned_recorded_and_idempotent(loaded):
    _, client, _, _ = loaded
    assert [m.version for m in available_migrations()] == sorted(m.version for m in available_migrations())
    assert migrate(client) == []  # nothing pending, nothing re-run
    assert all(s.applied_at is not None and s.checksum_matches for s in status(client))
    tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
    assert {"events", "spend_hourly", "spend_daily", "session_totals", "outcomes", "alert_events",
            "alert_episodes", "schema_migrations"} <= tables


def test_retention_follows_the_config(loaded):
    config = ClickHouseConfig(database="retention", raw_retention_days=30, rollup_retention_days=90)
    client = get_client(config, loaded[0])  # chDB: one data path per process, so a second database in it
    try:
        migrate(client, config)
        ttl = dict(client.query("SELECT name, create_table_query FROM system.tables "
                                "WHERE database = currentDatabase()").result_rows)
        assert "toIntervalDay(30)" in ttl["events"] and "toIntervalDay(30)" in ttl["alert_events"]
        assert "toIntervalDay(90)" in ttl["spend_hourly"]
        for column_type in ("LowCardinality(String)", "Decimal(38, 12)", "CODEC(ZSTD(1))"):
            assert column_type in ttl["events"]
    finally:
        client.close()


def test_a_sum_of_many_tiny_costs_is_exact(loaded):
    client = get_client(ClickHouseConfig(database="tiny_costs"), loaded[0])
    try:
        migrate(client)
        one = GatewayEvent(event_id="e", event_time="2026-11-02T10:00:00Z", gateway="t", api_key_hash="k",
                           model="gpt-4o-mini", cost_usd=Decimal("0.000000000001"), team="t1")
        n = 20_000
        rows = [R.event_row(one.model_copy(update={"event_id": f"e{i}"}), "events", 0, i) for i in range(n)]
        client.insert("events", rows, column_names=list(R.EVENT_COLUMNS))
        [(raw,)] = client.query("SELECT sum(cost_usd) FROM events").result_rows
        [(rollup,)] = client.query("SELECT sum(cost_usd) FROM spend_hourly WHERE dimension = 'team'").result_rows
        assert raw == rollup == Decimal("0.00000002")
        assert sum([1e-12] * n) != 2e-8  # what a Float64 column would have returned
    finally:
        client.close()


def test_every_report_runs_and_adds_up(loaded):
    _, client, events, outcomes = loaded
    reports = available_reports()
    results = {name: run_report(client, r) for name, r in reports.items()}
    exact = sum(e.cost_usd or 0 for e in events)
    assert results["total_spend"].rows[0][0] == len(events)
    assert results["total_spend"].rows[0][-1] == exact
    spend_col = {name: res.columns.index("spend_usd") for name, res in results.items() if "spend_usd" in res.columns}
    for name in ("spend_by_team", "spend_by_model", "spend_by_tier", "spend_by_day"):
        assert sum(row[spend_col[name]] for row in results[name].rows) == exact, name
    teams = {row[0]: row[spend_col["spend_by_team"]] for row in results["spend_by_team"].rows}
    for team in {e.team for e in events if e.team}:
        assert teams[team] == sum(e.cost_usd or 0 for e in events if e.team == team)
    top = results["top_keys"].rows[0]
    assert top[spend_col["top_keys"]] == max(
        sum((e.cost_usd or 0 for e in events if e.scope_value("key") == k), Decimal(0))
        for k in {e.scope_value("key") for e in events})
    p50, p90 = results["session_cost_quantiles"].rows[0][1:3]
    assert p50 <= p90
    cache = results["cache_hit_by_key"]
    ratios = [row[cache.columns.index("cache_hit_ratio")] for row in cache.rows]
    assert all(0 <= r <= 1 for r in ratios if r is not None)
    aliases = {e.scope_value("key"): e.api_key_alias for e in events}
    assert all(row[1] == aliases[row[0]] for row in cache.rows)  # key_directory names every key
    per_outcome = results["cost_per_outcome"]
    assert sum(row[per_outcome.columns.index("outcomes")] for row in per_outcome.rows) == len(outcomes)


def _config(tmp_path, data_dir) -> str:
    path = tmp_path / "spendwatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(data_dir)}))
    return str(path)


def test_report_and_query_commands(loaded, tmp_path):
    data_dir, _, events, _ = loaded
    config = _config(tmp_path, data_dir)
    runner = CliRunner()

    out = runner.invoke(cli, ["report", "spend_by_team", "-c", config, "--since", "2026-11-01", "--until", "2026-11-05"])
    assert out.exit_code == 0, out.output
    assert "Spend by team" in out.output and "platform" in out.output

    out = runner.invoke(cli, ["report", "-c", config, "--since", "2030-01-01"])  # all reports, an empty window
    assert out.exit_code == 0, out.output
    assert "no rows in this window" in out.output

    # the data is in the past (as the demo's week is): a relative --since counts back from its last event
    total = sum(e.cost_usd or 0 for e in events)
    last = max(e.event_time for e in events)
    out = runner.invoke(cli, ["report", "total_spend", "-c", config, "--since", "7d"])
    assert out.exit_code == 0, out.output
    assert f"No events in the last 7d; the latest is at {last:%Y-%m-%d %H:%M} UTC" in out.output
    assert f"{total:,.6f}" in out.output and f"{len(events):,}" in out.output
    out = runner.invoke(cli, ["report", "total_spend", "-c", config, "--since", "1h"])  # the last hour of the data only
    assert out.exit_code == 0 and f"{total:,.6f}" not in out.output, out.output
    out = runner.invoke(cli, ["report", "total_spend", "-c", config, "--since", "7d", "--until", "2030-01-01"])
    assert "No events in the last" not in out.output  # an explicit window is taken as it is

    assert runner.invoke(cli, ["report", "nope", "-c", config]).exit_code == 2
    assert runner.invoke(cli, ["report", "--since", "yesterday-ish", "-c", config]).exit_code == 2

    out = runner.invoke(cli, ["query", "SELECT sum(cost_usd) AS spend FROM events", "--format", "json", "-c", config])
    assert out.exit_code == 0, out.output
    assert Decimal(json.loads(out.output)[0]["spend"]) == sum(e.cost_usd or 0 for e in events)

    out = runner.invoke(cli, ["query", "SELECT team, count() AS n FROM events WHERE team = {t:String} GROUP BY team",
                              "--param", "t=platform", "--format", "csv", "-c", config])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "team,n"
    assert out.output.splitlines()[1] == f"platform,{sum(1 for e in events if e.team == 'platform')}"

    out = runner.invoke(cli, ["query", "SELECT * FROM no_such_table", "-c", config])
    assert out.exit_code == 1 and "no_such_table" in out.output

    out = runner.invoke(cli, ["db", "status", "-c", config])
    assert out.exit_code == 0 and out.output.count("applied") == len(available_migrations())
