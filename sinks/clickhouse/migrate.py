"""Versioned schema migrations: ``migrations/NNN_name.sql`` applied in order, once each.

Applied versions are recorded in ``schema_migrations`` (version, name, checksum, applied_at).
Every statement in a migration is idempotent (``IF NOT EXISTS``), so a migration interrupted
half-way is simply applied again in full on the next run. Retention (TTL) follows the config
and is re-applied on every run, only where it changed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

from clickhouse_connect.driver.client import Client

from .config import ClickHouseConfig

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""

#: table -> TTL expression template, and which config field sets its days.
RETENTION: dict[str, tuple[str, str]] = {
    "events": ("toDateTime(event_time) + INTERVAL {days} DAY", "raw_retention_days"),
    "outcomes": ("toDateTime(event_time) + INTERVAL {days} DAY", "raw_retention_days"),
    "alert_events": ("toDateTime(fired_at) + INTERVAL {days} DAY", "raw_retention_days"),
    "spend_hourly": ("hour + INTERVAL {days} DAY", "rollup_retention_days"),
    "spend_daily": ("day + INTERVAL {days} DAY", "rollup_retention_days"),
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self) -> list[str]:
        """The SQL statements of the file: full-line ``--`` comments dropped, split on a ``;`` ending a line."""
        body = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None
    checksum_matches: bool | None


def available_migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {versions}")
    return found


def _applied(client: Client) -> dict[int, tuple[str, datetime]]:
    client.command(SCHEMA_MIGRATIONS_DDL)
    rows = client.query(
        "SELECT version, argMax(checksum, applied_at), max(applied_at) FROM schema_migrations GROUP BY version"
    ).result_rows
    return {int(v): (c, at) for v, c, at in rows}


def migrate(client: Client, config: ClickHouseConfig | None = None) -> list[Migration]:
    """Apply pending migrations and the configured retention; return the migrations applied now."""
    config = config or ClickHouseConfig()
    applied = _applied(client)
    done = []
    for migration in available_migrations():
        if migration.version in applied:
            if applied[migration.version][0] != migration.checksum:
                log.warning("migration %03d_%s changed after it was applied; not re-applied",
                            migration.version, migration.name)
            continue
        log.info("applying migration %03d_%s", migration.version, migration.name)
        for statement in migration.statements():
            client.command(statement)
        client.insert("schema_migrations", [(migration.version, migration.name, migration.checksum)],
                      column_names=["version", "name", "checksum"])
        done.append(migration)
    apply_retention(client, config)
    return done


def apply_retention(client: Client, config: ClickHouseConfig) -> list[str]:
    """Set each table's TTL from the config where it differs; return the tables changed."""
    changed = []
    for table, (template, field) in RETENTION.items():
        days = getattr(config, field)
        current = client.query(
            "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            parameters={"t": table},
        ).result_rows
        if not current or f"toIntervalDay({days})" in current[0][0]:
            continue
        client.command(f"ALTER TABLE {table} MODIFY TTL {template.format(days=days)}")
        changed.append(table)
    return changed


def status(client: Client) -> list[MigrationStatus]:
    """Each shipped migration with when it was applied (``None``: pending) and whether it still matches."""
    applied = _applied(client)
    return [
        MigrationStatus(
            m.version, m.name,
            applied[m.version][1] if m.version in applied else None,
            (applied[m.version][0] == m.checksum) if m.version in applied else None,
        )
        for m in available_migrations()
    ]
