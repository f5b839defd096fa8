"""``spendwatch score-series``: the burn-rate online scorer over any ``timestamp,value`` CSV.

For users who export a series from ClickHouse (spend per 10 minutes of one key, say)
and want to see what the burn-rate model makes of it. Each row is scored with only the
rows before it, then learned unless it was flagged (score at or above ``--threshold``),
exactly as :mod:`spendwatch.detectors.burn_rate` protects its model.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import click

from spendwatch.detectors.burn_rate import SeasonalBurnScorer


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 (naive means UTC) or epoch seconds.

    >>> parse_timestamp("2026-11-23 09:10:00"), parse_timestamp("1700000000")
    (datetime.datetime(2026, 11, 23, 9, 10, tzinfo=datetime.timezone.utc), datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc))
    """
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def score_rows(
    rows: Iterable[tuple[datetime, float]], *, threshold: float = 0.999, grace_period: int = 48,
    alpha: float = 0.1, floor: float | None = None,
) -> Iterator[tuple[datetime, float, float]]:
    """Yield ``(timestamp, value, anomaly_score)``; each score uses only earlier rows.

    Examples
    --------
    >>> from datetime import timedelta
    >>> start = datetime(2026, 11, 2, tzinfo=UTC)
    >>> series = [(start + timedelta(hours=h), 10.0 + (h % 3)) for h in range(24 * 4)]
    >>> series.append((start + timedelta(hours=24 * 4), 80.0))
    >>> scores = [score for _, _, score in score_rows(series)]
    >>> max(scores[:-1]) < 0.999, scores[-1] > 0.999
    (True, True)
    """
    scorer = SeasonalBurnScorer(alpha=alpha, grace_period=grace_period, floor=floor)
    for timestamp, value in rows:
        ts = timestamp.timestamp()
        score = scorer.score_one(ts, value)
        yield timestamp, value, score
        if score < threshold:
            scorer.learn_one(ts, value)


def read_series(path: Path) -> Iterator[tuple[int, datetime, float]]:
    """(line number, timestamp, value) of each data row; a header row is skipped."""
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise click.ClickException(f"{path}:{number}: expected 'timestamp,value', got {row!r}")
            try:
                yield number, parse_timestamp(row[0]), float(row[1])
            except ValueError as exc:
                if number == 1:
                    continue  # the header
                raise click.ClickException(f"{path}:{number}: {exc} (row {row!r})") from exc


@click.command("score-series")
@click.argument("series", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Write timestamp,value,anomaly_score here.")
@click.option("--threshold", default=0.999, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Rows scoring at least this are flagged and not learned.")
@click.option("--grace", default=48, show_default=True, type=click.IntRange(1),
              help="Rows learned before scores start (scores are 0 until then).")
@click.option("--alpha", default=0.1, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Weight of the newest row in its hour-of-week slot.")
@click.option("--floor", default=None, type=click.FloatRange(0), help="Added to both sides of the log ratio "
              "so tiny absolute changes are not anomalies; default: 10%% of the series' level.")
def score_series(series: Path, output: Path, threshold: float, grace: int, alpha: float, floor: float | None) -> None:
    """Score SERIES.csv (timestamp,value) with the burn-rate online model."""
    rows = ((timestamp, value) for _, timestamp, value in read_series(series))
    flagged = count = 0
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for timestamp, value, score in score_rows(rows, threshold=threshold, grace_period=grace, alpha=alpha,
                                                  floor=floor):
            writer.writerow([timestamp.isoformat().replace("+00:00", "Z"), repr(value), f"{score:.6f}"])
            count += 1
            flagged += score >= threshold
    click.echo(f"{count} rows scored, {flagged} at or above {threshold} -> {output}", err=True)
