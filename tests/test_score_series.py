"""``spendwatch score-series``: timestamp,value in; anomaly_score in [0, 1] out, from earlier rows only."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from spendwatch.cli import cli

START = datetime(2026, 11, 2, tzinfo=UTC)


def seasonal(hours):
    """Office-hours spend per hour: high 9-17 on weekdays, low otherwise."""
    rows = []
    for h in range(hours):
        t = START + timedelta(hours=h)
        busy = t.weekday() < 5 and 9 <= t.hour < 17
        rows.append((t, (40.0 if busy else 4.0) + (h % 5) * 0.5))
    return rows


def write(path, rows, header=True):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(["timestamp", "value"])
        for t, v in rows:
            w.writerow([t.isoformat().replace("+00:00", "Z"), v])


def score(tmp_path, rows, name="series.csv", *args):
    src, out = tmp_path / name, tmp_path / f"{name}.scores.csv"
    write(src, rows)
    result = CliRunner().invoke(cli, ["score-series", str(src), "--output", str(out), *args])
    assert result.exit_code == 0, result.output
    with out.open() as f:
        return list(csv.DictReader(f))


def test_scores_flag_the_spike_and_not_the_seasonality(tmp_path):
    rows = seasonal(24 * 14)
    spike_at = 24 * 12 + 3  # a Saturday, 03:00
    rows[spike_at] = (rows[spike_at][0], 60.0)
    scored = score(tmp_path, rows)
    assert [r["timestamp"] for r in scored][:2] == ["2026-11-02T00:00:00Z", "2026-11-02T01:00:00Z"]
    scores = [float(r["anomaly_score"]) for r in scored]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[spike_at] > 0.999
    after_warmup = scores[24 * 8:]
    assert sum(s > 0.999 for s in after_warmup) == 1  # Monday mornings after quiet weekends included


def test_each_score_uses_only_earlier_rows(tmp_path):
    rows = seasonal(24 * 10)
    cut = 24 * 9 + 3  # after the week of warm-up the weekly season needs
    altered = rows[:cut] + [(t, v * 10) for t, v in rows[cut:]]
    a = score(tmp_path, rows, "a.csv")
    b = score(tmp_path, altered, "b.csv")
    assert [r["anomaly_score"] for r in a[:cut]] == [r["anomaly_score"] for r in b[:cut]]
    assert float(b[cut]["anomaly_score"]) > float(a[cut]["anomaly_score"]) + 0.5


def test_bad_rows_are_reported_with_their_line(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("timestamp,value\n2026-11-02T00:00:00Z,1\nnot-a-time,2\n")
    result = CliRunner().invoke(cli, ["score-series", str(src), "--output", str(tmp_path / "o.csv")])
    assert result.exit_code != 0 and "bad.csv:3" in result.output
