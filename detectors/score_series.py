"""``spendwatch score-series``: an online anomaly scorer over any ``timestamp,value`` CSV.

For users who export a series (spend per 10 minutes of one key, CPU, latency, request
counts) and want an anomaly likelihood per row. Each row is scored with only the rows
before it (:class:`~spendwatch.detectors.series_model.SeriesScorer`: a seasonal level
model and a Numenta-style anomaly likelihood), then learned -- at reduced weight if it
was flagged, so a level shift is flagged and then becomes the new normal.

The seasonal periods come from ``--period``: ``auto`` (default: daily when the rows are
less than a day apart and span two days, plus weekly when they span more than 8 days;
from the timestamps' cadence and span only), ``none``, or durations such as
``1d``, ``7d``, ``3600s``, ``15m`` (comma separated).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import click

from spendwatch.detectors.series_model import SeriesScorer, cadence_of, infer_seasons, seasons_for

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class BadInput(click.ClickException):
    """A clear message and exit code 2, no traceback."""

    exit_code = 2


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 (naive means UTC) or epoch seconds.

    >>> parse_timestamp("2026-11-23 09:10:00"), parse_timestamp("1700000000")
    (datetime.datetime(2026, 11, 23, 9, 10, tzinfo=datetime.timezone.utc), datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc))
    """
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp {text!r} is not finite")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"timestamp {text!r} is out of range") from exc


def parse_periods(text: str) -> list[float] | None:
    """``--period``: None for ``auto``, [] for ``none``, else the periods in seconds.

    >>> parse_periods("auto"), parse_periods("none"), parse_periods("1d, 7d"), parse_periods("300")
    (None, [], [86400.0, 604800.0], [300.0])
    >>> parse_periods("1 fortnight")
    Traceback (most recent call last):
    ...
    ValueError: period '1 fortnight' is not auto, none or durations like 1d,7d,300s
    """
    text = text.strip().lower()
    if text == "auto":
        return None
    if text == "none":
        return []
    periods = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", part)
        if not match or float(match[1]) <= 0:
            raise ValueError(f"period {text!r} is not auto, none or durations like 1d,7d,300s")
        periods.append(float(match[1]) * _UNITS[match[2] or "s"])
    return periods


def score_rows(rows: Iterable[tuple[datetime, float]], scorer: SeriesScorer) -> Iterator[tuple[datetime, float, float]]:
    """Yield ``(timestamp, value, anomaly_score)``; each score uses only earlier rows.

    Examples
    --------
    >>> from datetime import timedelta
    >>> start = datetime(2026, 11, 2, tzinfo=UTC)
    >>> series = [(start + timedelta(hours=h), 10.0 + (h % 3)) for h in range(24 * 4)]
    >>> series.append((start + timedelta(hours=24 * 4), 80.0))
    >>> scores = [score for _, _, score in score_rows(series, SeriesScorer())]
    >>> max(scores[:-1]) < 0.5, scores[-1] > 0.999
    (True, True)
    """
    for timestamp, value in rows:
        yield timestamp, value, scorer.process_one(timestamp.timestamp(), value)


def read_series(path: Path) -> list[tuple[int, datetime, float | None]]:
    """(line number, timestamp, value) of each data row; a header row is skipped; an empty value is None.

    A row that is not ``timestamp,value`` with a finite number raises :class:`BadInput` naming its line.
    """
    rows: list[tuple[int, datetime, float | None]] = []
    try:
        with path.open(newline="") as handle:
            for number, row in enumerate(csv.reader(handle), 1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2:
                    raise BadInput(f"{path}:{number}: expected 'timestamp,value', got {row!r}")
                try:
                    timestamp = parse_timestamp(row[0])
                    value = None if not row[1].strip() else float(row[1])
                except ValueError as exc:
                    if not rows and number == 1:
                        continue  # the header
                    raise BadInput(f"{path}:{number}: {exc} (row {row!r})") from None
                if value is not None and not math.isfinite(value):
                    raise BadInput(f"{path}:{number}: value {row[1]!r} is not a finite number (row {row!r})")
                if rows and timestamp < rows[-1][1]:
                    raise BadInput(f"{path}:{number}: timestamp {row[0]!r} is before the previous row's "
                                   "(rows must be in time order)")
                rows.append((number, timestamp, value))
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not a text CSV file ({exc.reason})") from None
    except csv.Error as exc:
        raise BadInput(f"{path}: {exc}") from None
    return rows


@click.command("score-series")
@click.argument("series", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Write timestamp,value,anomaly_score here.")
@click.option("--period", default="auto", show_default=True,
              help="Seasonal periods: auto (from the timestamps), none, or durations such as 1d,7d or 3600s.")
@click.option("--threshold", default=0.99, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Rows scoring at least this are flagged: learned at --flagged-weight only.")
@click.option("--flagged-weight", default=0.25, show_default=True, type=click.FloatRange(0, 1),
              help="Learning weight of a flagged row (0: never learned, which locks the model out after a shift).")
@click.option("--relearn-rows", default=12, show_default=True, type=click.IntRange(0),
              help="After this many consecutive flagged rows on one side the level moves to them: the shift is "
              "the new normal (0: never).")
@click.option("--short-window", default=5, show_default=True, type=click.IntRange(1),
              help="Rows of recent behaviour the likelihood judges.")
@click.option("--long-window", default=500, show_default=True, type=click.IntRange(2),
              help="Rows the distribution of raw scores is weighted over.")
@click.option("--grace", default=48, show_default=True, type=click.IntRange(1),
              help="Raw scores learned (after a seasonal period of warm-up) before scores start.")
@click.option("--alpha", default=0.1, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Weight of the newest period in each seasonal slot.")
@click.option("--direction", default="both", show_default=True, type=click.Choice(["both", "up", "down"]),
              help="Which deviations count: both, only above expected (spend), only below.")
def score_series(series: Path, output: Path, period: str, threshold: float, flagged_weight: float, relearn_rows: int,
                 short_window: int, long_window: int, grace: int, alpha: float, direction: str) -> None:
    """Score SERIES.csv (timestamp,value): an anomaly likelihood in [0, 1] per row, from earlier rows only."""
    try:
        periods = parse_periods(period)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--period") from None
    rows = read_series(series)
    timestamps = [t.timestamp() for _, t, v in rows if v is not None]
    cadence = cadence_of(timestamps)
    seasons = infer_seasons(timestamps) if periods is None else seasons_for(periods, cadence or 1.0)
    scorer = SeriesScorer(seasons, threshold=threshold, flagged_weight=flagged_weight,
                          relearn_rows=relearn_rows, short_window=short_window,
                          long_window=long_window, grace_period=grace, direction=direction, season_alpha=alpha,
                          cadence=cadence)
    flagged = count = 0
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for _, timestamp, value in rows:
            stamp = timestamp.isoformat().replace("+00:00", "Z")
            if value is None:  # a missing value: kept in the output, not scored
                writer.writerow([stamp, "", ""])
                continue
            score = scorer.process_one(timestamp.timestamp(), value)
            writer.writerow([stamp, repr(value), f"{score:.6f}"])
            count += 1
            flagged += score >= threshold
    described = ", ".join(f"{p / 3600:g}h x {n} slots" for p, n in seasons) or "none"
    click.echo(f"{count} rows scored (seasons: {described}), {flagged} at or above {threshold} -> {output}", err=True)
