"""`spendwatch demo`: a short replay end to end, its cleanup (also on Ctrl-C), and its parts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from spendwatch.demo import MARKER, DemoError, WorkerProgress, match_detections, prepare_data_dir

#: Thursday 14:24 -> 20:24 of the synthetic week (16 keys, seed 1): a retry storm and a
#: session burning over $100 in an hour, with ~7,500 events: the shortest window with two incidents.
SHORT_DEMO = ["--from-day", "3.6", "--days", "0.25", "--keys", "16", "--partitions", "2"]


#: The installed console script, as the README runs it.
SPENDWATCH = str(Path(sys.executable).with_name("spendwatch"))


def _env() -> dict[str, str]:
    """The environment of a user's shell piping the demo somewhere: no COLUMNS (rich then assumes 80)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPENDWATCH_PAGERDUTY", "SPENDWATCH_SLACK")) and k not in ("COLUMNS", "LINES")}
    # the README's command runs .venv/bin/spendwatch without activating the venv: spendwatch is not on PATH
    bin_dir = str(Path(SPENDWATCH).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir)
    return {**env, "PYTHONUNBUFFERED": "1"}


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (the demo's data directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((line for line in (proc / "status").read_text().splitlines() if line.startswith("State:")), "")
        except OSError:
            continue
        if text in cmdline and "zombie" not in state:
            found.append(cmdline)
    return found


@pytest.mark.slow
def test_short_demo_pages_the_injected_incidents_reports_and_cleans_up(tmp_path):
    data_dir = tmp_path / "demo"
    result = subprocess.run(
        [SPENDWATCH, "demo", *SHORT_DEMO, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path,
    )
    out = result.stdout
    assert result.returncode == 0, f"stdout:\n{out[-4000:]}\nstderr:\n{result.stderr[-4000:]}"

    # Pages printed live by the console receiver. The replay runs as fast as the worker goes, so
    # an error storm's episode (tens of event-minutes) can trigger and resolve within the pager's
    # 1 s group_wait, and Alertmanager-style grouping then sends nothing for it; its detection is
    # checked in the report below. The session burn stays open and is always paged.
    pages = re.findall(r"^\[\w+\] PAGE .*\n\s+who: .*detector: (\w+)", out, re.MULTILINE)
    assert "session_burn" in pages and "error_storm" in pages, out[-4000:]
    # one count of episodes everywhere: the progress bar, the closing summary, the PAGE lines printed
    bar = int(re.findall(r"events, (\d+) episodes?", out)[-1])
    summary = re.search(r"^(\d+) episodes opened .*printed above: (\d+) first pages", out, re.MULTILINE)
    assert summary and int(summary[1]) == bar == int(summary[2]) == len(pages), out[-4000:]
    assert "not printed" not in out
    # a page names a key by alias and a short hash, once; a resolve says what the episode was, never "$0.00"
    assert not re.search(r"[0-9a-f]{64}", out)
    assert not re.search(r"RESOLVED .*\n.*how much: \$0\.00 ", out)
    # The report came from ClickHouse, with spend, the incidents and their time to detect.
    report = out[out.index("Report (from ClickHouse)"):]
    assert re.search(r"[\d,]+ requests, \$[\d,]+\.\d\d spent, prompt cache hit ratio \d+\.\d%", report)
    for incident in ("error_storm", "session_burn"):
        row = next(line for line in report.splitlines() if line.strip("│ ").startswith(incident))
        assert "missed" not in row and " min" in row and row.rstrip(" │").endswith("printed"), row
    assert "Spend by team" in report and "Spend by model" in report
    assert "…" not in report  # piped, the tables keep their natural width (no cut cells)

    # Every process it started is gone, and the data stays for `spendwatch report`.
    assert processes_mentioning(str(data_dir)) == []
    config = data_dir / "spendwatch.yaml"
    # the commands it prints run as printed: the same program the demo was started with, on one line each
    report_line = next(line.strip() for line in out.splitlines() if " report --config " in line)
    assert report_line == f"{SPENDWATCH} report --config demo/spendwatch.yaml --since 7d"  # relative to where it ran
    after = subprocess.run([SPENDWATCH, "query", "--config", str(config),
                            "--format", "csv", "SELECT count() FROM alert_events WHERE action = 'trigger'"],
                           capture_output=True, text=True, timeout=120, env=_env())
    assert after.returncode == 0, after.stderr
    assert int(after.stdout.strip().splitlines()[-1]) == bar
    # --since 7d finds the (past) demo data
    week = subprocess.run([*report_line.split(), "total_spend"], capture_output=True, text=True, timeout=120, env=_env(),
                          cwd=tmp_path)
    assert week.returncode == 0, week.stderr
    requests = re.search(r"[\d,]+ requests", report)[0].split()[0]
    assert "No events in the last 7d" in week.stdout and re.search(rf"│\s+{requests} │", week.stdout), week.stdout


@pytest.mark.slow
def test_ctrl_c_stops_every_process_the_demo_started(tmp_path):
    data_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [SPENDWATCH, "demo", *SHORT_DEMO, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
    )
    try:
        seen = []
        for line in proc.stdout:  # the demo says when its worker is up: everything is running then
            seen.append(line)
            if "worker ready" in line:
                break
        else:
            pytest.fail("the demo ended before its worker was ready:\n" + "".join(seen))
        assert processes_mentioning(str(data_dir)), "expected the broker and the worker to be running"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, "".join(seen) + rest
    assert "every process the demo started is stopped" in rest
    assert processes_mentioning(str(data_dir)) == []


def test_a_rerun_wipes_its_own_data_but_refuses_a_foreign_directory(tmp_path):
    demo_dir = tmp_path / "demo"
    prepare_data_dir(demo_dir)
    (demo_dir / "chdb").mkdir()
    prepare_data_dir(demo_dir)
    assert (demo_dir / MARKER).exists() and not (demo_dir / "chdb").exists()

    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "data.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not a previous demo"):
        prepare_data_dir(foreign)
    assert (foreign / "data.txt").read_text() == "keep me"


def test_worker_progress_is_read_from_its_metrics():
    text = "\n".join([
        'spendwatch_events_in_total{result="ok",source="kafka"} 120.0',
        'spendwatch_events_in_total{result="dead_letter",source="kafka"} 3.0',
        'spendwatch_events_in_total{result="ok",source="http"} 999.0',
        "spendwatch_detector_batch_seconds_count 11.0",
        'spendwatch_alerts_total{action="trigger",detector="burn_rate"} 2.0',
        'spendwatch_alerts_total{action="resolve",detector="burn_rate"} 1.0',
    ])
    progress = WorkerProgress.parse(text)
    assert (progress.ok, progress.dead, progress.parsed, progress.alerts) == (120, 3, 123, 3)


def _truth(kind, subject, start, detector, *, negative=False, scope="key", session_id=None, bound=30):
    return SimpleNamespace(kind=kind, subject=subject, start=start, detector=detector, negative=negative,
                           scope=scope, session_id=session_id, ttd_bound_minutes=bound, team=None)


def _alert(detector, scope, subject, fired_at, labels=None):
    return {"detector": detector, "scope": scope, "subject": subject, "fired_at": fired_at, "summary": detector,
            "labels": labels or {}}


def test_detections_match_subject_prefer_the_expected_detector_and_ignore_earlier_alerts():
    t0 = datetime(2026, 11, 5, 16, tzinfo=UTC)
    truths = [
        _truth("error_storm", "k-storm", t0, "error_storm"),
        _truth("session_burn", "k-burn", t0, "session_burn", session_id="s-burn"),
        _truth("budget_overrun", "payments", t0, "budget_pace", scope="team"),
        _truth("sparse_key", "k-sparse", t0, None, negative=True),
        _truth("new_key", "k-new", t0, None, negative=True),
    ]
    alerts = [
        _alert("error_storm", "key", "k-storm", t0.replace(hour=15)),  # before the incident: not it
        _alert("burn_rate", "key", "k-storm", t0.replace(minute=20)),
        _alert("error_storm", "key", "k-storm", t0.replace(minute=40)),
        _alert("session_burn", "session", "s-burn", t0.replace(minute=12), {"key_hash": "k-burn"}),
        _alert("budget_pace", "key", "payments", t0.replace(minute=5)),  # a key named like the team: not it
        _alert("spend_spike", "key", "k-other", t0.replace(minute=1), {"key_hash": "k-new"}),
    ]
    by_kind = {d.kind: d for d in match_detections(truths, alerts)}
    assert (by_kind["error_storm"].detector, by_kind["error_storm"].minutes_to_detect) == ("error_storm", 40)
    assert (by_kind["session_burn"].detector, by_kind["session_burn"].minutes_to_detect) == ("session_burn", 12)
    assert by_kind["budget_overrun"].detector is None  # missed
    assert by_kind["sparse_key"].fired_at is None  # quiet, as it must be
    assert by_kind["new_key"].detector == "spend_spike"  # paged: a false positive the report shows
