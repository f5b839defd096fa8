"""``spendwatch backtest``: real files in, every notification out, bad lines counted, table at the end."""

from __future__ import annotations

import gzip
from datetime import timedelta

import orjson
from click.testing import CliRunner
from detector_kit import T0, event, flat, hourly_traffic

from spendwatch.cli import cli
from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.adapters import dumps
from spendwatch.schemas.alert import Alert

CONFIG_YAML = """
detectors:
  burn_rate: {enabled: false}
  model_mix_drift: {enabled: false}
  cache_hit_drop: {enabled: false}
  efficiency: {enabled: false}
  error_storm: {enabled: false}
  session_burn: {floor_usd: 40}
  budget_pace:
    budgets:
      - {scope: team, subject: ml, monthly_usd: 300, owner: ana}
"""


def traffic():
    history = hourly_traffic(T0, 24 * 8, flat(2.0), team="ml", alias="batch")
    burst = [event(T0 + timedelta(days=8, hours=9, minutes=m), 4, session="loop", model="o3", team="ml",
                   alias="batch") for m in range(60)]
    return history + burst


def write_events(path, records, bad_lines=()):
    lines = [dumps(r) for r in records]
    for index, bad in bad_lines:
        lines.insert(index, bad)
    with gzip.open(path, "wb") as out:
        out.write(b"\n".join(lines) + b"\n")


def test_backtest_writes_every_notification_and_reports_bad_lines(tmp_path):
    records = traffic()
    events = tmp_path / "events.jsonl.gz"
    write_events(events, records, bad_lines=[(5, b"{not json"), (300, b'{"event_id": "x"}'), (301, b"")])
    config = tmp_path / "spendwatch.yaml"
    config.write_text(CONFIG_YAML)
    out = tmp_path / "out" / "alerts.jsonl"

    result = CliRunner().invoke(cli, ["backtest", str(events), "--config", str(config), "--alerts-out", str(out),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    alerts = [Alert.model_validate(orjson.loads(line)) for line in out.read_bytes().splitlines()]
    by = {(a.detector, a.action.value) for a in alerts}
    assert {("spend_spike", "trigger"), ("session_burn", "trigger"), ("budget_pace", "trigger")} <= by
    assert not [a for a in alerts if a.detector == "burn_rate"]
    # the same alerts as the library call with the same config (one implementation)
    from spendwatch.config import load_settings

    expected = list(run_backtest(records, load_settings(config), drain=timedelta(hours=24)))
    assert [a.model_dump(mode="json") for a in expected] == [orjson.loads(line) for line in out.read_bytes().splitlines()]
    # the report: table of pages per detector, counts, bad lines with reasons
    assert "Pages per detector" in result.output and "spend_spike" in result.output
    assert f"{len(records):,} records, 2 bad lines" in result.output
    assert "invalid_json" in result.output and "line 6" in result.output


def test_backtest_reads_plain_jsonl_and_rejects_a_bad_config(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(dumps(r) for r in traffic()[:50]) + b"\n")
    out = tmp_path / "alerts.jsonl"
    ok = CliRunner().invoke(cli, ["backtest", str(events), "--alerts-out", str(out), "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert out.read_bytes() == b""
    bad = tmp_path / "bad.yaml"
    bad.write_text("detectors:\n  spend_spike: {factor: 0.5}\n")
    result = CliRunner().invoke(cli, ["backtest", str(events), "--config", str(bad), "--alerts-out", str(out)])
    assert result.exit_code != 0 and "factor" in result.output


def test_run_backtest_accepts_settings_or_the_detectors_section():
    records = traffic()
    from spendwatch.config import Settings

    a = list(run_backtest(records, Settings()))
    b = list(run_backtest(records, DetectorsConfig()))
    assert a == b and a
