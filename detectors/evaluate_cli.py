"""``spendwatch evaluate``: the honest evaluation -- realistic traffic per seed, labelled backtest, pooled.

For each seed, :class:`~spendwatch.traffic.realistic.RealisticTraffic` writes LiteLLM logs and
their labels to a temporary directory; the logs are read back through the adapters exactly as
``spendwatch backtest`` reads a user's file, replayed with the default detectors (or ``--config``)
plus the team budgets a user would write, and scored by
:func:`~spendwatch.detectors.evaluation.evaluate`. The per-family table pools every seed's
incidents; the per-run line under each family shows the spread.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import orjson
import yaml


def parse_seeds(text: str) -> list[int]:
    """``1-5`` or ``1,3,7`` or ``2``.

    >>> parse_seeds("1-3"), parse_seeds("4,9"), parse_seeds("7")
    ([1, 2, 3], [4, 9], [7])
    """
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, sep, high = part.partition("-")
        try:
            seeds.extend(range(int(low), int(high) + 1) if sep else [int(part)])
        except ValueError:
            raise click.BadParameter(f"{part!r}: expected a seed, a range like 1-5, or a comma list") from None
    if not seeds:
        raise click.BadParameter("no seeds")
    return seeds


def _merged_config(user: dict[str, Any], budgets: dict[str, Any]) -> dict[str, Any]:
    """The user's YAML with the generated team budgets added, unless it sets budgets itself."""
    merged = dict(user)
    detectors = dict(merged.get("detectors") or {})
    pace = dict(detectors.get("budget_pace") or {})
    if not pace.get("budgets"):
        pace["budgets"] = budgets["detectors"]["budget_pace"]["budgets"]
    detectors["budget_pace"] = pace
    merged["detectors"] = detectors
    return merged


def run_seed(seed: int, days: float, warmup_days: float, keys: int, teams: int, user_config: dict[str, Any],
             workers: int, workdir: Path) -> dict[str, Any]:
    """Generate, backtest and score one seed; returns :func:`evaluate`'s report plus timings."""
    from spendwatch.config import load_settings
    from spendwatch.detectors.backtest import InputStats, read_records, run_backtest, run_backtest_parallel
    from spendwatch.detectors.evaluation import Directory, evaluate, read_labels
    from spendwatch.traffic.realistic import RealisticTraffic, write_files

    started = time.perf_counter()
    traffic = RealisticTraffic(days=days, seed=seed, keys=keys, teams=teams, warmup_days=warmup_days)
    events, labels_path, config_path = (workdir / f"events-{seed}.jsonl", workdir / f"labels-{seed}.csv",
                                        workdir / f"config-{seed}.yaml")
    write_files(traffic, events, labels_path)
    config_path.write_text(yaml.safe_dump(_merged_config(user_config, traffic.suggested_config()), sort_keys=False))
    settings = load_settings(config_path)
    stats = InputStats()
    records = read_records(events, settings, stats)
    generated = time.perf_counter() - started
    drain = timedelta(hours=24)
    if workers > 1:
        alerts = [orjson.loads(line) for line in run_backtest_parallel(records, settings, workers=workers, drain=drain)]
    else:
        alerts = [a.model_dump(mode="json") for a in run_backtest(records, settings, drain=drain)]
    report = evaluate(read_labels(labels_path), [a for a in alerts if a["action"] != "resolve"],
                      Directory.from_records(records, warmup_days), warmup_days=warmup_days,
                      detectors=settings.detectors.detector_settings())
    report["seed"] = seed
    report["records"] = stats.records
    report["bad_lines"] = stats.bad_lines
    report["seconds"] = {"generate_and_read": round(generated, 1),
                         "replay_and_score": round(time.perf_counter() - started - generated, 1)}
    events.unlink()
    return report


@click.command("evaluate")
@click.option("--seeds", default="1-5", show_default=True, help="Seeds to generate: 1-5, or 1,4,9.")
@click.option("--days", default=14.0, show_default=True, type=click.FloatRange(1), help="Days of traffic per seed.")
@click.option("--warmup-days", default=7.0, show_default=True, type=click.FloatRange(0),
              help="No incident before, and pages before are not false pages.")
@click.option("--keys", default=60, show_default=True, type=click.IntRange(4), help="API keys per organisation.")
@click.option("--teams", default=10, show_default=True, type=click.IntRange(2), help="Teams per organisation.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="spendwatch YAML to evaluate (defaults when omitted); team budgets are added unless it sets some.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Replay each seed in this many processes (same pages).")
@click.option("--json", "as_json", is_flag=True, help="Print the pooled and per-seed reports as one JSON object.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each seed's labels and config here (events are large and always removed).")
def evaluate_command(seeds: str, days: float, warmup_days: float, keys: int, teams: int, config_path: Path | None,
                     workers: int, as_json: bool, keep: Path | None) -> None:
    """Generate realistic traffic per seed, run the labelled backtest, and pool the scores."""
    from spendwatch.detectors.evaluation import aggregate, format_report

    if days <= warmup_days:
        raise click.BadParameter("--days must be longer than --warmup-days")
    if teams * 2 > keys:
        raise click.BadParameter("--keys must be at least twice --teams")
    user_config: dict[str, Any] = {}
    if config_path is not None:
        from spendwatch.config import ConfigError, load_settings

        try:
            load_settings(config_path)  # a clear error, with line numbers, before any work
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        user_config = yaml.safe_load(config_path.read_text()) or {}
    reports = []
    with tempfile.TemporaryDirectory(prefix="spendwatch-evaluate-") as tmp:
        workdir = keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for seed in parse_seeds(seeds):
            report = run_seed(seed, days, warmup_days, keys, teams, user_config, workers, workdir)
            reports.append(report)
            click.echo(f"seed {seed}: {report['records']:,} records, {len(report['incidents'])} incidents, "
                       f"{report['false_pages']['count']} false pages ({report['seconds']['generate_and_read']}s "
                       f"generate+read, {report['seconds']['replay_and_score']}s replay)", err=True)
    pooled = aggregate(reports)
    if as_json:
        click.echo(orjson.dumps({"pooled": pooled, "runs": reports}, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"{len(reports)} seeds x {days:g} days, {keys} keys, {teams} teams; warm-up {warmup_days:g} days")
    click.echo(format_report(pooled))
