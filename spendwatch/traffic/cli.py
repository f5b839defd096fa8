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
def generate(days: float, seed: int, start: date, output: Path, incidents: str, keys: int, teams: int,
             truth_out: Path | None, config_out: Path | None) -> None:
    """Generate DAYS of multi-team LLM gateway traffic with injected, labelled incidents."""
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
