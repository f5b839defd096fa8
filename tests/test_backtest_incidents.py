"""Issue 3 acceptance: a week of multi-team traffic with every incident kind injected.

``spendwatch backtest`` (the CLI, and the same engine through ``run_backtest``) must page
every incident with the right detector on the right subject within its time-to-detect
bound, and stay quiet on every labelled negative scenario (weekday/weekend seasonality,
a key ramping to 2x, a new key, a sparse key, one large but normal session).

``pytest -s tests/test_backtest_incidents.py`` prints the time-to-detect table that
docs/detectors.md quotes.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import timedelta

import orjson
import pytest
import yaml
from click.testing import CliRunner

from spendwatch.cli import cli
from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.alert import Alert
from spendwatch.traffic import INCIDENTS, NEGATIVES, GroundTruth, Traffic, generate, iter_json_lines
from spendwatch.traffic.budgets import suggested_config

#: Small enough to replay twice in well under a minute on a quiet machine; every scenario still in.
RUN = {"days": 7, "seed": 1, "keys": 20, "teams": 4}
pytestmark = pytest.mark.slow  # two replays of ~60k events: ~1 min on a quiet machine


@dataclass
class Replay:
    traffic: Traffic
    truth: list[GroundTruth]
    cli_alerts: list[dict]
    api_alerts: list[Alert]
    cli_output: str


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> Replay:
    tmp = tmp_path_factory.mktemp("incidents")
    traffic = Traffic(**RUN)
    events = tmp / "events.jsonl.gz"
    with gzip.open(events, "wb", compresslevel=1) as out:
        out.write(b"\n".join(iter_json_lines(traffic=traffic)) + b"\n")
    config = suggested_config(traffic)
    config_path = tmp / "spendwatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    alerts_path = tmp / "alerts.jsonl"
    result = CliRunner().invoke(cli, ["backtest", str(events), "--config", str(config_path),
                                      "--alerts-out", str(alerts_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    cli_alerts = [orjson.loads(line) for line in alerts_path.read_bytes().splitlines()]
    api_alerts = list(run_backtest(generate(**RUN), DetectorsConfig.model_validate(config["detectors"]),
                                   drain=timedelta(hours=24)))
    return Replay(traffic, traffic.ground_truth(), cli_alerts, api_alerts, result.output)


def _triggers(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.action.value == "trigger"]


def _detections(replay: Replay) -> dict[str, tuple[GroundTruth, Alert | None]]:
    out = {}
    for truth in replay.truth:
        if truth.negative:
            continue
        hits = [a for a in _triggers(replay.api_alerts)
                if a.detector == truth.detector and a.scope == truth.scope and a.subject == truth.subject
                and a.fired_at >= truth.start]
        out[truth.kind] = (truth, min(hits, key=lambda a: a.fired_at) if hits else None)
    return out


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def _table(replay: Replay) -> str:
    aliases = {k.key_hash: k.alias for k in replay.traffic.keys}
    rows = ["| incident | detector | subject | started (UTC) | time to detect | bound |", "|---|---|---|---|---|---|"]
    for kind, (truth, alert) in sorted(_detections(replay).items(), key=lambda kv: kv[1][0].start):
        ttd = "missed" if alert is None else f"{_minutes(alert.fired_at - truth.start):.1f} min"
        subject = truth.key_alias or truth.subject
        rows.append(f"| {kind} | {truth.detector} | {truth.scope} {subject} | {truth.start:%a %H:%M} | {ttd} | "
                    f"{truth.ttd_bound_minutes:g} min |")
    negatives = {t.subject: t.kind for t in replay.truth if t.negative}
    for subject, kind in negatives.items():
        pages = [a for a in _triggers(replay.api_alerts) if a.subject == subject]
        rows.append(f"| {kind} (negative) | - | key {aliases.get(subject, subject)} | - | "
                    f"{len(pages)} pages | 0 pages |")
    # an incident key's team really does spend more: its team-level pages are not background noise
    incident_subjects = {t.subject for t in replay.truth} | {t.team for t in replay.truth if not t.negative}
    background = [a for a in _triggers(replay.api_alerts) if a.subject not in incident_subjects]
    by_detector: dict[str, int] = {}
    for a in background:
        by_detector[a.detector] = by_detector.get(a.detector, 0) + 1
    rows.append(f"\nPages on the {len(replay.traffic.keys) - 12} background keys: {len(background)} {by_detector}")
    return "\n".join(rows)


def test_cli_and_api_send_the_same_pages(replay):
    api = [orjson.loads(orjson.dumps(a.model_dump(mode="json"))) for a in replay.api_alerts]
    assert replay.cli_alerts == api
    assert "Pages per detector" in replay.cli_output


def test_every_incident_is_paged_by_its_detector_within_its_bound(replay):
    print("\n" + _table(replay))
    detections = _detections(replay)
    assert set(detections) == set(INCIDENTS)
    late = {}
    for kind, (truth, alert) in detections.items():
        if alert is None or _minutes(alert.fired_at - truth.start) > truth.ttd_bound_minutes:
            late[kind] = None if alert is None else round(_minutes(alert.fired_at - truth.start), 1)
    assert not late, f"missed or late (minutes): {late}"


def test_pages_carry_owner_labels_and_root_cause(replay):
    for kind, (truth, alert) in _detections(replay).items():
        assert alert is not None, kind
        assert alert.summary and alert.dedup_key
        if truth.scope == "key":
            assert alert.labels.get("key_alias") == truth.key_alias and alert.labels.get("team") == truth.team
        else:
            assert alert.labels.get("owner") == f"{truth.subject}-lead@example.com"
    runaway = _detections(replay)["runaway_loop"][1]
    assert runaway.root_cause and runaway.root_cause[0].name in {"claude-opus-4-1", "s000-runaway"}


def test_negative_scenarios_are_never_paged(replay):
    negatives = {t.subject: t.kind for t in replay.truth if t.negative}
    assert set(negatives.values()) == set(NEGATIVES)
    pages = [(negatives[a.subject], a.detector, a.summary) for a in _triggers(replay.api_alerts)
             if a.subject in negatives]
    assert not pages


def test_every_episode_that_triggers_also_resolves_once(replay):
    by_key: dict[str, list[str]] = {}
    for a in replay.api_alerts:
        by_key.setdefault(a.dedup_key, []).append(a.action.value)
    for dedup_key, actions in by_key.items():
        assert actions[0] == "trigger" and actions.count("trigger") == 1, dedup_key
        assert actions.count("resolve") <= 1 and (actions[-1] == "resolve" or "resolve" not in actions)
