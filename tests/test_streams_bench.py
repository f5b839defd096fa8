"""``spendwatch bench --json`` runs end to end and reports every figure (not how fast: that is the bench's job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FIELDS = ("pipeline_events_per_s", "raw_consume_events_per_s", "ratio", "latency_p50_ms", "latency_p99_ms",
          "peak_rss_mb", "keys")


def test_bench_json_reports_the_figures(tmp_path: Path) -> None:
    spendwatch = Path(sys.executable).with_name("spendwatch")
    done = subprocess.run([str(spendwatch), "bench", "--events", "20000", "--keys", "1000", "--json"],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(FIELDS) <= set(figures)
    assert figures["keys"] == 1000 and figures["events"] == 20000
    assert figures["raw_consume_events_per_s"] > 0 and figures["pipeline_events_per_s"] > 0
    runs = figures["raw_consume_runs_events_per_s"]  # the reference is the median of three reads
    assert len(runs) == 3 and sorted(runs)[1] == figures["raw_consume_events_per_s"]
    assert figures["ratio"] == pytest.approx(figures["pipeline_events_per_s"] / figures["raw_consume_events_per_s"],
                                             rel=0.05)
    assert figures["incidents_paged"] > 0 and figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert figures["peak_rss_mb"] > 0
