"""Benchmark: score-series against a rolling z-score on labelled synthetic series, same run.

    python -m spendwatch.benchmarks.score_series [--seeds 5] [--days 21]

Each series is a daily sine (with a weekend dip) plus Gaussian noise at 5-minute,
hourly or 1-minute resolution, with labelled anomalies: isolated spikes, a dip, and a
persistent level shift (labelled for its first hour only: after that it is the new
normal). The rolling z-score scores ``2 * Phi(|z|) - 1`` against the mean and standard
deviation of the last day of rows. Printed per scorer and threshold: anomalies found,
median rows to detect, false rows per 1,000 (flags outside every label window and
outside the first ``--settle`` hours after a shift), false rows flagged more than a day
after the shift (a lock-out would flag them all), and the fraction of rows >= 0.5 on a
noise-free sine.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import deque
from statistics import median

from spendwatch.detectors.series_model import SeriesScorer, infer_seasons

DAY = 86_400


def make_series(seed: int, days: int, cadence: int, noise: float = 0.05) -> tuple[list[float], list[float], list[tuple[int, int]], int]:
    """(timestamps, values, label windows as (first row, last row), shift row)."""
    rng = random.Random(seed)
    n = days * DAY // cadence
    ts = [1_762_128_000.0 + i * cadence for i in range(n)]  # a Monday
    base = rng.uniform(-50, 200)
    amplitude = rng.uniform(10, 100)
    sigma = noise * amplitude
    values = []
    for t in ts:
        weekend = ((int(t) // DAY) + 3) % 7 >= 5
        season = amplitude * math.sin(2 * math.pi * (t % DAY) / DAY) * (0.5 if weekend else 1.0)
        values.append(base + season + rng.gauss(0, sigma))
    hour = 3600 // cadence or 1
    labels = []
    first = n // 2  # anomalies in the second half only: the first is warm-up for both scorers
    for _ in range(3):  # spikes
        row = rng.randrange(first, n - 2 * hour)
        values[row] += rng.choice([-1, 1]) * rng.uniform(6, 20) * sigma
        labels.append((row, row + min(hour, 6)))
    dip = rng.randrange(first, n - 4 * hour)
    for row in range(dip, dip + 2 * hour):
        values[row] -= 0.6 * amplitude
    labels.append((dip, dip + 2 * hour))
    shift = rng.randrange(first, n - 2 * DAY // cadence)
    size = rng.choice([-1, 1]) * rng.uniform(0.5, 2.0) * amplitude
    for row in range(shift, n):
        values[row] += size
    labels.append((shift, shift + hour))
    return ts, values, labels, shift


def rolling_z(values: list[float], window: int) -> list[float]:
    recent: deque[float] = deque(maxlen=window)
    total = squares = 0.0
    scores = []
    for value in values:
        if len(recent) >= min(window, 30):
            mean = total / len(recent)
            std = math.sqrt(max(squares / len(recent) - mean * mean, 0.0))
            z = abs(value - mean) / std if std > 0 else (0.0 if value == mean else math.inf)
            scores.append(math.erf(z / math.sqrt(2)))
        else:
            scores.append(0.0)
        if len(recent) == window:
            old = recent[0]
            total -= old
            squares -= old * old
        recent.append(value)
        total += value
        squares += value * value
    return scores


def evaluate(scores: list[float], labels: list[tuple[int, int]], shift: int, threshold: float, settle: int,
             day_rows: int) -> tuple[int, list[int], int, int]:
    found, delays = 0, []
    for first, last in labels:
        hit = next((row for row in range(first, last + 1) if scores[row] >= threshold), None)
        if hit is not None:
            found += 1
            delays.append(hit - first)
    excused = {row for first, last in labels for row in range(first, last + 1)}
    excused |= set(range(shift, shift + settle))
    start = len(scores) // 2
    false = sum(1 for row in range(start, len(scores)) if scores[row] >= threshold and row not in excused)
    late = sum(1 for row in range(shift + day_rows, len(scores)) if scores[row] >= threshold and row not in excused)
    return found, delays, false, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--settle", type=float, default=6.0, help="Hours after a shift whose flags are not false.")
    args = parser.parse_args()
    rows: dict[tuple[str, float], list] = {}
    sine_half: dict[str, list[float]] = {"score-series": [], "rolling z-score": []}
    for cadence in (300, 3600, 60):
        for seed in range(1, args.seeds + 1):
            days = args.days
            ts, values, labels, shift = make_series(seed, days, cadence)
            day_rows = DAY // cadence
            settle = int(args.settle * 3600 // cadence)
            scorer = SeriesScorer(infer_seasons(ts), cadence=cadence)
            scorers = {"score-series": [scorer.process_one(t, v) for t, v in zip(ts, values, strict=True)],
                       "rolling z-score": rolling_z(values, day_rows)}
            for name, scores in scorers.items():
                for threshold in (0.99, 0.999):
                    found, delays, false, late = evaluate(scores, labels, shift, threshold, settle, day_rows)
                    acc = rows.setdefault((name, threshold), [0, 0, [], 0, 0, 0])
                    acc[0] += found
                    acc[1] += len(labels)
                    acc[2] += delays
                    acc[3] += false
                    acc[4] += len(scores) - len(scores) // 2
                    acc[5] += late
            clean = [100 + 50 * math.sin(2 * math.pi * (t % DAY) / DAY) for t in ts]
            pure = SeriesScorer(infer_seasons(ts), cadence=cadence)
            half = len(clean) // 2
            sine_half["score-series"].append(
                sum(pure.process_one(t, v) >= 0.5 for t, v in zip(ts, clean, strict=True)) / len(clean))
            sine_half["rolling z-score"].append(sum(s >= 0.5 for s in rolling_z(clean, day_rows)[half:]) / half)
    print(f"{args.seeds} seeds x cadences 5 min, 1 h, 1 min; {args.days} days")
    print(f"{'scorer':<16} {'threshold':>9} {'found':>9} {'median rows':>11} {'false/1k rows':>13} "
          f"{'false >1 day after shift':>26}")
    for (name, threshold), (found, total, delays, false, scored, late) in rows.items():
        print(f"{name:<16} {threshold:>9} {found:>4}/{total:<4} {median(delays) if delays else '-':>11} "
              f"{1000 * false / scored:>13.2f} {late:>26}")
    for name, fractions in sine_half.items():
        print(f"noise-free daily sine, rows >= 0.5: {name}: {100 * max(fractions):.1f}% (worst series)")


if __name__ == "__main__":
    main()
