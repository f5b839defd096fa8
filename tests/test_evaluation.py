"""Labelled evaluation: matching pages to labelled incidents, the metrics, the labels file, the commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from click.testing import CliRunner

from spendwatch.detectors.evaluation import (
    FAMILY_DETECTORS, Directory, IncidentLabel, LabelError, aggregate, evaluate, format_report, parse_labels,
)
from spendwatch.schemas.event import GatewayEvent

START = datetime(2026, 11, 2, tzinfo=UTC)


def at(day: float, hour: float = 0) -> datetime:
    return START + timedelta(days=day, hours=hour)


def page(detector: str, scope: str, subject: str, fired: datetime, action: str = "trigger") -> dict:
    return {"action": action, "detector": detector, "scope": scope, "subject": subject,
            "fired_at": fired.isoformat(), "summary": f"{detector} on {subject}"}


@pytest.fixture
def directory() -> Directory:
    return Directory(
        start=START, end=at(14), aliases={"search-bot": "h-bot", "search-ana": "h-ana", "data-job": "h-job"},
        key_team={"h-bot": "search", "h-ana": "search", "h-job": "data"},
        key_user={"h-bot": "bot@example.com", "h-ana": "ana@example.com", "h-job": "job@example.com"},
        key_org={"h-bot": "acme", "h-ana": "acme", "h-job": "acme"},
        session_key={"s-loop": "h-ana"}, key_days=200, days=14,
    )


def test_key_label_by_alias_matches_a_page_on_its_hash_with_time_to_detect(directory):
    labels = [IncidentLabel("spend_spike", at(8, 9), at(8, 12), key="search-bot")]
    report = evaluate(labels, [page("burn_rate", "key", "h-bot", at(8, 9.5)),
                               page("spend_spike", "key", "h-bot", at(8, 10))], directory)
    row = report["families"]["spend_spike"]
    assert (row["found"], row["total"], row["ttd_median_minutes"]) == (1, 1, 30.0)
    assert row["first"] == {"burn_rate": 1} and row["named_first_share"] == 0.0
    assert report["false_pages"]["count"] == 0


def test_a_page_on_another_key_is_neither_a_detection_nor_excused(directory):
    labels = [IncidentLabel("error_storm", at(8, 9), at(8, 10), key="search-bot")]
    report = evaluate(labels, [page("error_storm", "key", "h-job", at(8, 9.2))], directory)
    assert report["families"]["error_storm"]["found"] == 0
    assert report["false_pages"]["count"] == 1
    assert report["false_pages"]["examples"][0]["subject"] == "data-job"


def test_time_window_has_grace_before_and_after(directory):
    labels = [IncidentLabel("cache_hit_drop", at(8, 9), at(8, 10), key="h-bot")]  # the hash works too
    early = evaluate(labels, [page("cache_hit_drop", "key", "h-bot", at(8, 8.9))], directory)
    assert early["families"]["cache_hit_drop"]["found"] == 1
    assert early["incidents"][0]["ttd_minutes"] == 0.0  # paged before the estimated start: 0, not negative
    late = evaluate(labels, [page("cache_hit_drop", "key", "h-bot", at(8, 10 + 5.9))], directory)
    assert late["families"]["cache_hit_drop"]["found"] == 1
    too_late = evaluate(labels, [page("cache_hit_drop", "key", "h-bot", at(8, 10 + 6.1))], directory)
    assert too_late["families"]["cache_hit_drop"]["found"] == 0
    assert too_late["false_pages"]["count"] == 1


def test_session_label_matches_pages_on_its_key_and_user_but_not_its_team(directory):
    labels = [IncidentLabel("runaway_loop", at(9), at(9, 20), session="s-loop")]
    team_only = evaluate(labels, [page("budget_pace", "team", "search", at(9, 2))], directory)
    assert team_only["families"]["runaway_loop"]["found"] == 0
    assert team_only["false_pages"]["count"] == 0  # related: excused, not a detection
    by_user = evaluate(labels, [page("burn_rate", "user", "ana@example.com", at(9, 3))], directory)
    assert by_user["families"]["runaway_loop"]["found"] == 1
    by_key = evaluate(labels, [page("session_burn", "key", "h-ana", at(9, 1))], directory)
    assert by_key["families"]["runaway_loop"]["first"] == {"session_burn": 1}
    other = evaluate(labels, [page("session_burn", "key", "h-bot", at(9, 1))], directory)
    assert other["families"]["runaway_loop"]["found"] == 0


def test_team_drift_is_found_by_a_member_key_but_a_budget_overrun_is_not(directory):
    member = [page("model_mix_drift", "key", "h-ana", at(10, 1))]
    drift = evaluate([IncidentLabel("model_mix_drift", at(10), at(11), team="search")], member, directory)
    assert drift["families"]["model_mix_drift"]["found"] == 1
    budget = evaluate([IncidentLabel("budget_overrun", at(10), at(14), team="search")], member, directory)
    assert budget["families"]["budget_overrun"]["found"] == 0
    assert budget["false_pages"]["count"] == 0
    paced = evaluate([IncidentLabel("budget_overrun", at(10), at(14), team="search")],
                     [page("budget_pace", "team", "search", at(11))], directory)
    assert paced["families"]["budget_overrun"]["first"] == {"budget_pace": 1}
    assert paced["families"]["budget_overrun"]["named_first_share"] == 1.0


def test_a_page_another_concurrent_label_explains_does_not_find_this_one(directory):
    # the team's mix-drift page while one of its keys drifts is that drift's page, not the budget's
    budget = IncidentLabel("budget_overrun", at(9), at(14), team="search")
    key_drift = IncidentLabel("model_mix_drift", at(10), at(11), key="search-ana")
    team_drift_page = page("model_mix_drift", "team", "search", at(10, 1))
    alone = evaluate([budget], [team_drift_page], directory)
    assert alone["families"]["budget_overrun"]["first"] == {"model_mix_drift": 1}  # nothing else explains it
    both = evaluate([budget, key_drift], [team_drift_page, page("budget_pace", "team", "search", at(11))], directory)
    assert both["families"]["budget_overrun"]["first"] == {"budget_pace": 1}
    assert both["families"]["budget_overrun"]["named_first_share"] == 1.0
    missed = evaluate([budget, key_drift], [team_drift_page], directory)
    assert missed["families"]["budget_overrun"]["found"] == 0
    assert missed["false_pages"]["count"] == 0
    # a label's own named detector always counts, whatever else is going on
    spike = IncidentLabel("spend_spike", at(10), at(11), key="search-ana")
    own = evaluate([spike, key_drift], [page("spend_spike", "key", "h-ana", at(10, 1))], directory)
    assert own["families"]["spend_spike"]["found"] == 1


def test_only_triggers_after_the_warmup_are_false_pages(directory):
    alerts = [page("burn_rate", "key", "h-job", at(3)), page("burn_rate", "key", "h-job", at(8), "repeat"),
              page("burn_rate", "key", "h-job", at(8, 1)), page("spend_spike", "key", "h-bot", at(12))]
    report = evaluate([], alerts, directory)
    assert report["false_pages"]["count"] == 2
    assert report["false_pages"]["per_100_key_days"] == 1.0
    assert report["false_pages"]["by_detector"] == {"burn_rate": 1, "spend_spike": 1}
    assert report["pages"]["burn_rate"] == {"triggers": 2, "false": 1}


def test_a_family_whose_detector_never_pages_reports_zero_not_an_error(directory):
    labels = [IncidentLabel("context_bloat", at(9), at(10), key="search-bot")]
    report = evaluate(labels, [], directory, detectors=["spend_spike"])
    row = report["families"]["context_bloat"]
    assert (row["found"], row["named_detector"], row["named_first_share"]) == (0, "context_bloat", None)
    assert report["pages"] == {"spend_spike": {"triggers": 0, "false": 0}}
    assert "context_bloat" in format_report(report)


def test_an_unknown_subject_is_reported_unresolved_and_missed(directory):
    report = evaluate([IncidentLabel("spend_spike", at(9), at(10), key="nobody")],
                      [page("spend_spike", "key", "h-bot", at(9, 0.5))], directory)
    assert report["incidents"][0]["resolved"] is False and not report["incidents"][0]["found"]


def test_aggregate_pools_incidents_and_key_days(directory):
    labels = [IncidentLabel("spend_spike", at(8), at(8, 2), key="search-bot")]
    hit = evaluate(labels, [page("spend_spike", "key", "h-bot", at(8, 1))], directory)
    miss = evaluate(labels, [page("burn_rate", "key", "h-job", at(9))], directory)
    pooled = aggregate([hit, miss])
    row = pooled["families"]["spend_spike"]
    assert (row["found"], row["total"], row["recall_per_run"]) == (1, 2, [1.0, 0.0])
    assert pooled["false_pages"]["per_100_key_days"] == 0.25  # 1 over 400 key-days
    text = format_report(pooled)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "recall per run: 100% 0%" in text


def test_family_detectors_name_every_family():
    assert FAMILY_DETECTORS["budget_overrun"] == "budget_pace"
    assert set(FAMILY_DETECTORS) == {"runaway_loop", "session_burn", "spend_spike", "model_mix_drift",
                                     "context_bloat", "cache_hit_drop", "error_storm", "budget_overrun"}


# -- the labels file ------------------------------------------------------------------------------
def test_labels_from_csv_and_json_agree():
    csv_text = ("family,key,team,session,start,end\n"
                "spend_spike,search-bot,,,2026-11-10T09:00:00Z,2026-11-10T12:00:00Z\n"
                "budget_overrun,,search,,2026-11-10T00:00:00+00:00,2026-11-16T00:00:00\n")
    json_text = orjson.dumps([
        {"family": "spend_spike", "key": "search-bot", "start": "2026-11-10T09:00:00Z", "end": "2026-11-10T12:00Z"},
        {"family": "budget_overrun", "team": "search", "start": "2026-11-10T00:00Z", "end": "2026-11-16T00:00Z"},
    ])
    assert parse_labels(csv_text) == parse_labels(json_text)
    assert parse_labels(csv_text)[1].end == datetime(2026, 11, 16, tzinfo=UTC)


@pytest.mark.parametrize(("text", "message"), [
    ("family,key,start\nx,k,2026-11-10T09:00Z\n", "lacks end"),
    ("family,key,team,session,start,end\nx,,,,2026-11-10T09:00Z,2026-11-10T10:00Z\n", "line 2: set one of"),
    ("family,key,start,end\nx,k,yesterday,2026-11-10T10:00Z\n", "line 2 start: 'yesterday' is not"),
    ("family,key,start,end\nx,k,2026-11-10T10:00Z,2026-11-10T09:00Z\n", "line 2: end"),
    ("[1, 2]", "expected a JSON list of objects"),
    ("[{", "not valid JSON"),
])
def test_bad_labels_name_the_row(text, message):
    with pytest.raises(LabelError, match=message):
        parse_labels(text)


def test_directory_counts_key_days_after_the_warmup_and_maps_aliases():
    def event(n: int, when: datetime, key: str, session: str) -> GatewayEvent:
        return GatewayEvent(event_id=f"e{n}", event_time=when, gateway="litellm", api_key_hash=key,
                            api_key_alias=f"alias-{key}", team="search", session_id=session, model="gpt-5",
                            cost_usd=Decimal("0.01"))

    events = [event(1, at(0, 5), "k1", "s1"), event(2, at(7, 1), "k1", "s2"), event(3, at(7, 9), "k1", "s2"),
              event(4, at(8, 1), "k2", "s3"), event(5, at(9, 1), "k1", "s4")]
    directory = Directory.from_records(events, warmup_days=7)
    assert directory.key_days == 3  # k1 on days 7 and 9, k2 on day 8
    assert directory.key_hash("alias-k2") == "k2" and directory.session_key["s3"] == "k2"
    assert directory.key_micros["k1"] == 40_000  # four requests of $0.01, in integer micro-dollars


# -- the commands -----------------------------------------------------------------------------------
def test_backtest_with_labels_scores_a_small_realistic_seed(tmp_path):
    """The labelled backtest end to end (CI): realistic LiteLLM logs, labels, default config + budgets."""
    from spendwatch.cli import cli as main
    from spendwatch.traffic.realistic import RealisticTraffic, write_files

    traffic = RealisticTraffic(days=8, seed=3, keys=14, teams=3, warmup_days=7, incidents_per_family=(1, 2))
    events, labels, config = tmp_path / "events.jsonl.gz", tmp_path / "labels.csv", tmp_path / "budgets.yaml"
    write_files(traffic, events, labels, config)
    result = CliRunner().invoke(main, ["backtest", str(events), "--labels", str(labels), "--config", str(config),
                                       "--json", "--no-progress", "--workers", "2"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert sum(row["total"] for row in report["families"].values()) == len(traffic.labels)
    assert all(row["resolved"] for row in report["incidents"])  # every label's subject is in the events
    assert report["false_pages"]["key_days"] > 0
    session_burns = report["families"]["session_burn"]
    assert session_burns["total"] >= 1
    assert not (tmp_path / "alerts.jsonl").exists()


def test_backtest_with_labels_prints_the_table_and_still_writes_the_pages(tmp_path):
    from spendwatch.cli import cli as main

    events, labels, alerts = tmp_path / "events.jsonl", tmp_path / "labels.json", tmp_path / "alerts.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps({
        "event_id": f"e{i}", "event_time": f"2026-11-23T09:{i:02d}:00Z", "gateway": "litellm", "api_key_hash": "k1",
        "api_key_alias": "ci-agent", "team": "search", "session_id": "s1", "model": "o3", "cost_usd": "6"})
        for i in range(12)))
    labels.write_bytes(orjson.dumps([{"family": "session_burn", "session": "s1", "start": "2026-11-23T09:00:00Z",
                                      "end": "2026-11-23T09:12:00Z"}]))
    result = CliRunner().invoke(main, ["backtest", str(events), "--labels", str(labels), "--alerts-out", str(alerts),
                                       "--warmup-days", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("session_burn"))
    assert row.split()[1:4] == ["1/1", "100%", "5m"] and "session_burn 1" in row  # on pace: $30 in its first 5 min
    assert orjson.loads(alerts.read_bytes().splitlines()[0])["detector"] == "session_burn"


def test_backtest_needs_alerts_out_or_labels(tmp_path):
    from spendwatch.cli import cli as main

    events = tmp_path / "e.jsonl"
    events.write_text("")
    result = CliRunner().invoke(main, ["backtest", str(events), "--no-progress"])
    assert result.exit_code != 0 and "--alerts-out" in result.output


def test_backtest_reports_a_bad_labels_file(tmp_path):
    from spendwatch.cli import cli as main

    events, labels = tmp_path / "e.jsonl", tmp_path / "labels.csv"
    events.write_text("")
    labels.write_text("family,key,start,end\nspend_spike,k,soon,later\n")
    result = CliRunner().invoke(main, ["backtest", str(events), "--labels", str(labels), "--no-progress"])
    assert result.exit_code == 1 and "line 2 start" in result.output


def test_evaluate_command_pools_seeds_the_same_in_parallel(tmp_path):
    """Pooling and the per-seed process pool (a short warm-up: detection quality is not what is tested)."""
    from spendwatch.cli import cli as main

    args = ["evaluate", "--seeds", "1,2", "--days", "1.25", "--warmup-days", "1", "--keys", "8", "--teams", "2"]
    result = CliRunner().invoke(main, [*args, "--json", "--keep", str(tmp_path), "--workers", "2"])
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout)
    assert [run["seed"] for run in out["runs"]] == [1, 2]
    pooled = out["pooled"]["false_pages"]
    assert pooled["key_days"] == sum(r["false_pages"]["key_days"] for r in out["runs"]) > 0
    assert (tmp_path / "labels-2.csv").exists() and not (tmp_path / "events-2.jsonl").exists()
    serial = CliRunner().invoke(main, args)
    assert serial.exit_code == 0, serial.output
    assert f"false pages: {pooled['count']} over {pooled['key_days']:,} key-days" in serial.stdout
    assert all(len(line) <= 80 for line in serial.stdout.splitlines())


def test_directory_skips_outcome_events():
    from spendwatch.schemas.outcome import OutcomeEvent

    outcome = OutcomeEvent(outcome_id="o1", event_time=at(8), kind="task_accepted", value=1.0, api_key_hash="k9",
                           source="agent-harness")
    events = [GatewayEvent(event_id=f"e{day}", event_time=at(day), gateway="litellm", api_key_hash="k1",
                           model="gpt-5", cost_usd=Decimal("0.01")) for day in (0, 8)]
    directory = Directory.from_records([outcome, *events], warmup_days=7)
    assert directory.key_days == 1 and "k9" not in directory.key_requests
