"""``spendwatch generate``: write synthetic gateway traffic (canonical JSON lines) and its ground truth."""

from __future__ import annotations

import gzip
import sys
from datetime import date
from pathlib import Path

import click
import orjson
import yaml

from spendwatch.traffic import Traffic, iter_json_lines
from spendwatch.traffic.generator import DEFAULT_START, parse_incidents


@click.command("generate")
@click.option("--days", type=float, default=7, show_default=True, help="Length of the run in days.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same traffic.")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default=DEFAULT_START.isoformat(),
              show_default=True, help="First day (UTC midnight).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default="-", show_default=True,
              help="Events file: .jsonl, .jsonl.gz (gzip), or - for stdout.")
@click.option("--incidents", default="all", show_default=True,
              help="all, none, or a comma-separated list of: " + ", ".join(sorted(parse_incidents("all"))))
@click.option("--keys", type=int, default=60, show_default=True, help="Number of API keys (12 carry scenarios).")
@click.option("--teams", type=int, default=6, show_default=True, help="Number of teams (2-12).")
@click.option("--truth-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the ground truth (incidents and negative scenarios) as JSON here.")
@click.option("--config-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a spendwatch YAML with team budgets sized for this traffic (for spendwatch backtest --config).")
@click.option("--realistic", is_flag=True,
              help="The honest evaluation's organisation instead (LiteLLM StandardLoggingPayload lines, 4-8 "
              "incidents per family on ordinary keys after --warmup-days; see docs/detectors.md).")
@click.option("--labels-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --realistic: write the labels here (.csv or .json) for spendwatch backtest --labels.")
@click.option("--warmup-days", type=float, default=7, show_default=True, help="With --realistic: no incident before.")
def generate(days: float, seed: int, start: date, output: Path, incidents: str, keys: int, teams: int,
             truth_out: Path | None, config_out: Path | None, realistic: bool, labels_out: Path | None,
             warmup_days: float) -> None:
    """Generate DAYS of multi-team LLM gateway traffic with injected, labelled incidents."""
    if realistic:
        _generate_realistic(days, seed, start, output, keys, teams, warmup_days, labels_out, config_out)
        return
    if labels_out is not None:
        raise click.BadParameter("--labels-out needs --realistic (the scenario generator writes --truth-out)")
    try:
        traffic = Traffic(days, seed, start.date() if hasattr(start, "date") else start, incidents, keys, teams)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if str(output) == "-":
        sink = sys.stdout.buffer
    elif output.name.endswith(".gz"):
        sink = gzip.open(output, "wb", compresslevel=3)
    else:
        sink = output.open("wb")
    count = 0
    try:
        batch: list[bytes] = []
        for line in iter_json_lines(traffic=traffic):
            batch.append(line)
            if len(batch) >= 4096:
                sink.write(b"\n".join(batch) + b"\n")
                count += len(batch)
                batch.clear()
        if batch:
            sink.write(b"\n".join(batch) + b"\n")
            count += len(batch)
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
    truths = traffic.ground_truth()
    if truth_out is not None:
        truth_out.write_bytes(orjson.dumps([t.to_dict() for t in truths], option=orjson.OPT_INDENT_2))
    if config_out is not None:
        from spendwatch.traffic.budgets import suggested_config

        header = (f"# Budgets for `spendwatch generate --days {days:g} --seed {seed} --keys {keys} --teams {teams}`"
                  f" traffic (team {traffic.budget_team} is the one that overruns).\n")
        config_out.write_text(header + yaml.safe_dump(suggested_config(traffic), sort_keys=False))
    incidents_n = sum(not t.negative for t in truths)
    click.echo(f"wrote {count:,} records ({len(traffic.keys)} keys, {len(traffic.teams)} teams, {days:g} days, "
               f"{incidents_n} incidents, {len(truths) - incidents_n} negative scenarios) to {output}", err=True)


def _generate_realistic(days: float, seed: int, start: date, output: Path, keys: int, teams: int, warmup_days: float,
                        labels_out: Path | None, config_out: Path | None) -> None:
    import tempfile

    from spendwatch.traffic.realistic import RealisticTraffic, write_files

    if str(output) == "-":
        raise click.BadParameter("--realistic writes a file: give --output events.jsonl[.gz]")
    try:
        traffic = RealisticTraffic(days, seed, start.date() if hasattr(start, "date") else start, keys, teams,
                                   warmup_days)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    with tempfile.TemporaryDirectory() as tmp:
        labels = labels_out or Path(tmp) / "labels.csv"
        count = write_files(traffic, output, labels, config_out)
    click.echo(f"wrote {count:,} LiteLLM records ({len(traffic.keys)} keys, {len(traffic.teams)} teams, {days:g} days, "
               f"{len(traffic.labels)} labelled incidents) to {output}", err=True)
