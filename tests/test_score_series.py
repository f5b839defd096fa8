"""``spendwatch score-series``: timestamp,value in; anomaly_score in [0, 1] out, from earlier rows only."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from spendwatch.cli import cli
from spendwatch.detectors.series_model import SeriesScorer, infer_seasons, seasons_for

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


def test_bad_rows_exit_2_naming_the_line_without_a_traceback(tmp_path):
    cases = {
        "nan.csv": "timestamp,value\n2026-11-02T00:00:00Z,1\n2026-11-02T01:00:00Z,nan\n",
        "text.csv": "timestamp,value\n2026-11-02T00:00:00Z,1\n2026-11-02T01:00:00Z,lots\n",
        "order.csv": "timestamp,value\n2026-11-02T01:00:00Z,1\n2026-11-02T00:00:00Z,2\n",
        "short.csv": "timestamp,value\n2026-11-02T00:00:00Z,1\n2026-11-02T01:00:00Z\n",
    }
    for name, text in cases.items():
        src = tmp_path / name
        src.write_text(text)
        result = CliRunner().invoke(cli, ["score-series", str(src), "--output", str(tmp_path / "o.csv")])
        assert result.exit_code == 2, (name, result.output)
        assert f"{name}:3" in result.output and "Traceback" not in result.output, result.output
        assert not isinstance(result.exception, ValueError)


def test_negative_zero_and_missing_values_are_scored(tmp_path):
    src = tmp_path / "temps.csv"
    lines = ["timestamp,value"]
    for h in range(24 * 3):
        value = "" if h == 30 else repr(-5.0 + (h % 24 >= 12) * 5.0)  # -5 at night, 0 by day, one row empty
        lines.append(f"{(START + timedelta(hours=h)).isoformat()},{value}")
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.csv"
    result = CliRunner().invoke(cli, ["score-series", str(src), "--output", str(out), "--period", "1d"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 24 * 3 and rows[30]["anomaly_score"] == "" and rows[30]["value"] == ""
    assert all(0 <= float(r["anomaly_score"]) <= 1 for r in rows if r["anomaly_score"])


def test_period_option_is_validated(tmp_path):
    src = tmp_path / "s.csv"
    write(src, seasonal(30))
    result = CliRunner().invoke(cli, ["score-series", str(src), "--output", str(tmp_path / "o.csv"),
                                      "--period", "fortnightly"])
    assert result.exit_code == 2 and "--period" in result.output


def test_a_level_shift_is_flagged_then_learned_not_locked_out(tmp_path):
    rows = [(START + timedelta(minutes=5 * i), 50.0 + (i * 7919 % 11) * 0.3) for i in range(600)]
    rows += [(START + timedelta(minutes=5 * i), 120.0 + (i * 7919 % 11) * 0.3) for i in range(600, 1200)]
    scores = [float(r["anomaly_score"]) for r in score(tmp_path, rows, "shift.csv", "--period", "none")]
    assert max(scores[600:605]) >= 0.99
    assert max(scores[600 + SeriesScorer.RELEARN_ROWS:]) < 0.5  # the old rule: every later row scored 1.0
    # the model's expectation itself moved to the new level (not only the likelihood getting used to misses)
    scorer = SeriesScorer()
    for t, value in rows[:600 + SeriesScorer.RELEARN_ROWS]:
        scorer.process_one(t.timestamp(), value)
    assert abs(scorer.model.predict_one(rows[-1][0].timestamp()) - 121.5) < 3


# -- properties of the scorer itself ---------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
cadences = st.sampled_from([1.0, 60.0, 300.0, 3600.0, 86400.0])


@settings(max_examples=150, deadline=None)
@given(values=st.lists(finite, min_size=1, max_size=400), cadence=cadences,
       gaps=st.lists(st.integers(1, 50), min_size=1, max_size=400),
       period=st.sampled_from([None, [86400.0], [3600.0, 86400.0], [7.0]]))
def test_any_finite_series_scores_in_unit_interval(values, cadence, gaps, period):
    ts, t = [], 0.0
    for i in range(len(values)):
        t += cadence * gaps[i % len(gaps)]
        ts.append(t)
    seasons = infer_seasons(ts) if period is None else seasons_for(period, cadence)
    scorer = SeriesScorer(seasons, cadence=cadence, grace_period=5)
    for t, value in zip(ts, values):
        score = scorer.process_one(t, value)
        assert 0.0 <= score <= 1.0


@settings(max_examples=100, deadline=None)
@given(value=finite, n=st.integers(1, 600), cadence=cadences)
def test_a_constant_series_scores_zero(value, n, cadence):
    ts = [i * cadence for i in range(n)]
    scorer = SeriesScorer(infer_seasons(ts), cadence=cadence, grace_period=5)
    assert all(scorer.process_one(t, value) == 0.0 for t in ts)


@settings(max_examples=120, deadline=None)
@given(level=st.floats(-1e6, 1e6), noise=st.floats(1e-3, 1e3), ratio=st.floats(12, 1e6),
       sign=st.sampled_from([-1, 1]), at=st.integers(150, 400), seed=st.integers(0, 2**32 - 1))
def test_a_step_is_flagged_then_relearned_within_the_bound(level, noise, ratio, sign, at, seed):
    rng = random.Random(seed)
    step = sign * ratio * noise
    values = [level + rng.gauss(0, noise) + (step if i >= at else 0.0) for i in range(at + 400)]
    scorer = SeriesScorer()
    scores = [scorer.process_one(i * 60.0, v) for i, v in enumerate(values)]
    assert max(scores[at:at + scorer.likelihood.short_window]) >= scorer.threshold
    assert max(scores[at + SeriesScorer.RELEARN_ROWS:]) < scorer.threshold
