"""``spendwatch config``: validate a config file, show the effective configuration."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from spendwatch.config import CONFIG_ENV_VAR, ConfigError, effective_config, load_config


@click.group("config")
def config() -> None:
    """Validate or show the configuration (one YAML file, see docs/config.md)."""


@config.command("validate")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings (e.g. a secret written into the file) as errors.")
def validate(file: Path, strict: bool) -> None:
    """Check FILE: YAML syntax, every key and value, ${ENV} references. Exit 1 on any error."""
    try:
        loaded = load_config(file)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(f"error: {issue}", err=True)
        sys.exit(1)
    for issue in loaded.warnings:
        click.echo(f"warning: {issue}", err=True)
    if strict and loaded.warnings:
        sys.exit(1)
    click.echo(f"{file}: OK")


@config.command("show")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), envvar=CONFIG_ENV_VAR,
              help=f"Config file (default: ${CONFIG_ENV_VAR}; none means built-in defaults).")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def show(config_path: Path | None, fmt: str) -> None:
    """Print the effective configuration: the file merged over every default, secrets masked."""
    try:
        loaded = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(f"error: {issue}", err=True)
        sys.exit(1)
    data = effective_config(loaded)
    source = str(config_path) if config_path else "built-in defaults"
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"# effective spendwatch configuration from {source}; secrets masked")
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
