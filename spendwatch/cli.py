"""The ``spendwatch`` command.

Each subcommand lives next to the code it drives and is imported only when run, so
``spendwatch --help`` stays fast and one area's heavy imports never slow another's.
"""

from __future__ import annotations

import importlib

import click

from spendwatch import __version__

#: command name -> (module:attribute of a click command, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spendwatch.demo:demo", "Run the embedded demo: broker, chDB, worker, a synthetic week with incidents."),
    "worker": ("spendwatch.streams.worker:worker", "Run a stream worker (detectors over Kafka)."),
    "ingest": ("spendwatch.streams.ingest.server:ingest", "Run the HTTP ingest service (events and OTLP traces)."),
    "pager": ("spendwatch.sinks.paging.service:pager", "Run the pager: alerts topic -> PagerDuty / Slack / console."),
    "backtest": ("spendwatch.detectors.backtest:backtest", "Replay events through the detectors; write the pages."),
    "evaluate": ("spendwatch.detectors.evaluate_cli:evaluate_command",
                 "Realistic traffic per seed -> labelled backtest: per-family recall and false pages."),
    "score-series": ("spendwatch.detectors.score_series:score_series", "Score a timestamp,value CSV: an anomaly likelihood per row (seasonal, online)."),
    "generate": ("spendwatch.traffic.cli:generate", "Generate synthetic gateway traffic with injected incidents."),
    "bench": ("spendwatch.benchmarks.pipeline:bench", "Benchmark the pipeline against a plain consumer."),
    "sink": ("spendwatch.sinks.clickhouse.cli:sink", "Run the ClickHouse sink alone: events, outcomes, alerts -> ClickHouse."),
    "db": ("spendwatch.sinks.clickhouse.cli:db", "ClickHouse schema: migrate, status."),
    "report": ("spendwatch.sinks.clickhouse.cli:report", "Spend reports from ClickHouse, as terminal tables."),
    "query": ("spendwatch.sinks.clickhouse.cli:query", "Run any SQL against spendwatch's ClickHouse."),
    "config": ("spendwatch.config_cli:config", "Validate or show the configuration."),
    "broker": ("spendwatch.broker:broker", "Start the embedded Kafka broker (local development)."),
    "up": ("spendwatch.up:up", "Run broker, worker, ingest, sink and pager as separate processes from one config."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return _unavailable(name)
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str) -> click.Command:
    @click.command(name, help=COMMANDS[name][1], context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def missing(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"'{name}' is not available in this build of spendwatch")

    return missing


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spendwatch")
def cli() -> None:
    """spendwatch: watches every LLM call through your gateways and pages the owner when spend goes wrong."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
