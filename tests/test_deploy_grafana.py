"""The Grafana dashboard: valid JSON, datasources that are provisioned, and every SQL
query run against real ClickHouse (chDB) with spendwatch's migrations applied."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml"


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _clickhouse_queries(dashboard: dict) -> dict[str, str]:
    queries = {}
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("type") == "grafana-clickhouse-datasource":
                queries[panel["title"]] = target["rawSql"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "rawSql" in annotation.get("target", {}):
            queries[f"annotation: {annotation['name']}"] = annotation["target"]["rawSql"]
    return queries


def expand_grafana_macros(sql: str, start: str = "2026-01-01 00:00:00", end: str = "2026-01-08 00:00:00") -> str:
    """Replace the ClickHouse datasource's macros the way the plugin does for a time range."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 lambda m: f"{m.group(1)} >= toDateTime('{start}') AND {m.group(1)} <= toDateTime('{end}')", sql)
    sql = sql.replace("$__fromTime", f"toDateTime('{start}')").replace("$__toTime", f"toDateTime('{end}')")
    assert "$__" not in sql.replace("$__conditionalAll(", ""), f"a Grafana macro this test does not expand: {sql}"
    return sql


def test_there_is_a_dashboard_and_it_is_valid_json():
    assert DASHBOARDS
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        ids = [p["id"] for p in _panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in _panels(dashboard):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{panel['title']} overflows the grid"


def test_every_datasource_a_panel_uses_is_provisioned():
    provisioned = {d["uid"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    for path in DASHBOARDS:
        for panel in _panels(json.loads(path.read_text())):
            for ds in [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]:
                if ds:
                    assert ds["uid"] in provisioned, f"{path.name}/{panel['title']}: datasource {ds['uid']} not provisioned"


def test_the_dashboard_covers_the_service_metrics():
    from spendwatch import metrics

    exprs = " ".join(t.get("expr", "") for path in DASHBOARDS
                     for p in _panels(json.loads(path.read_text())) for t in p.get("targets", []))
    for name in ("EVENTS_IN", "CONSUMER_LAG", "DETECTOR_LATENCY", "PAGES_SENT", "PAGES_FAILED",
                 "CLICKHOUSE_WRITE_SECONDS", "CLICKHOUSE_BACKLOG", "DEAD_LETTERS"):
        family = getattr(metrics, name)._name
        assert family in exprs, f"no panel shows {family}"


def expand_variables(sql: str, values: dict) -> str:
    """Template variables the way Grafana and the ClickHouse datasource fill them in: ``${name:singlequote}``
    becomes the quoted values, ``$__conditionalAll(condition, $name)`` the condition."""
    import re

    sql = re.sub(r"\$__conditionalAll\((.*?), \$(\w+)\)", lambda m: m.group(1), sql)
    for name, chosen in values.items():
        sql = sql.replace("${%s:singlequote}" % name, ", ".join("'" + v.replace("'", "\\'") + "'" for v in chosen))
    assert "${" not in sql and "$__" not in sql, f"a template variable or macro left: {sql}"
    return sql


_RUN_QUERIES = textwrap.dedent("""
    import json, sys
    from datetime import datetime, timedelta, UTC
    from decimal import Decimal
    from spendwatch.sinks.clickhouse.client import get_client
    from spendwatch.sinks.clickhouse.config import ClickHouseConfig
    from spendwatch.sinks.clickhouse.migrate import migrate

    data_dir, given = sys.argv[1], json.loads(sys.stdin.read())
    variables, queries = given["variables"], given["queries"]
    client = get_client(ClickHouseConfig(), data_dir)
    migrate(client, ClickHouseConfig())
    t0 = datetime(2026, 1, 2, 10, tzinfo=UTC)
    rows = [
        [f"e{i}", t0 + timedelta(minutes=7 * i), "litellm", f"key{i % 3}", f"key{i % 3}", f"alias-key{i % 3}",
         f"user{i % 4}", ["search", "ads"][i % 2], "m-" + str(i % 2), "frontier" if i % 2 else "economy",
         1000, 400 if i % 3 else 0, 200, Decimal("0.012345"), f"s{i % 5}"]
        for i in range(60)
    ]
    client.insert("events", rows, column_names=[
        "event_id", "event_time", "gateway", "key_scope", "api_key_hash", "api_key_alias", "user", "team", "model",
        "model_tier",
        "input_tokens", "cache_read_tokens", "output_tokens", "cost_usd", "session_id"])
    client.insert("alert_events", [["dk1", "trigger", "spend_spike", "key", "key1", "critical", t0, t0,
                                    "key1 spent $40 in 1h", 40.0, 10.0, "usd"]],
                  column_names=["dedup_key", "action", "detector", "scope", "subject", "severity", "fired_at",
                                "episode_started_at", "summary", "observed", "expected", "unit"])
    values = {}  # each template variable at "All": every value its own query returns, in dashboard order
    for name, sql in variables:
        values[name] = [str(row[0]) for row in client.query(expand_variables(sql, values)).result_rows]
    out = {"$" + name: {"columns": ["value"], "rows": len(v), "first": v} for name, v in values.items()}
    for title, sql in queries.items():
        result = client.query(expand_variables(sql, values))
        out[title] = {"columns": list(result.column_names), "rows": len(result.result_rows),
                      "first": [str(v) for v in result.result_rows[0]] if result.result_rows else []}
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_every_clickhouse_query_runs_against_the_migrated_schema(tmp_path):
    pytest.importorskip("spendwatch.sinks.clickhouse.migrate")
    queries = {}
    for path in DASHBOARDS:
        for title, sql in _clickhouse_queries(json.loads(path.read_text())).items():
            queries[f"{path.name}: {title}"] = expand_grafana_macros(sql)
    assert len(queries) >= 10
    variables = [(v["name"], v["query"]) for path in DASHBOARDS
                 for v in json.loads(path.read_text())["templating"]["list"] if v["type"] == "query"]
    # chDB allows one data directory per process: run it in a child of its own.
    script = inspect.getsource(expand_variables) + _RUN_QUERIES
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)],
                            input=json.dumps({"variables": variables, "queries": queries}),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(answers) == set(queries) | {f"${name}" for name, _ in variables}
    # teams and keys to choose from, keys by alias; tables name keys by alias, never by hash
    assert sorted(answers["$team"]["first"]) == ["ads", "search"] and len(answers["$key"]["first"]) == 3
    assert answers["spendwatch-spend.json: Top keys by spend"]["first"][0].startswith("alias-key")
    assert answers["spendwatch-spend.json: Alert episodes"]["first"][4] == "alias-key1"
    empty = [title for title, a in answers.items() if a["rows"] == 0]
    assert not empty, f"queries that found none of the test data: {empty}"
    timeseries = [t for t, a in answers.items() if a["columns"][0] == "time"]
    assert timeseries, "no time series query"


def test_macro_expansion_catches_unknown_macros():
    with pytest.raises(AssertionError):
        expand_grafana_macros("SELECT 1 WHERE $__timeInterval(hour)")
