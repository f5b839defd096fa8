"""The offline backtest: replay events through exactly the engine the stream workers run.

``spendwatch backtest EVENTS.jsonl[.gz] [--config FILE] --alerts-out ALERTS.jsonl`` reads
one gateway message per line in any format the adapters understand (canonical JSON,
LiteLLM, OpenRouter, OTLP, CloudEvents...), replays the records in event-time order and
writes every notification that would have been sent. It is the tuning tool: change the
YAML thresholds, re-run against last month, compare the pages.

Determinism: :func:`run_backtest` sorts the records by event time (stable), and before a
record whose time crosses one or more tick boundaries it ticks the states at each
crossed boundary, exactly as the stream workers do (:class:`~spendwatch.detectors.clock.TickClock`,
which also bounds the ticks of a long gap) -- skipping only the calls that :meth:`Engine.tick`
would return from at once (quiet states off the idle boundary, and quiet states without an
idle-tick detector).
"""

from __future__ import annotations

import contextlib
import gzip
import heapq
import multiprocessing
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from spendwatch.detectors.clock import TickClock
from spendwatch.detectors.config import DetectorsConfig
from spendwatch.detectors.engine import Engine, SubjectState

if TYPE_CHECKING:
    from spendwatch.config import Settings
    from spendwatch.schemas.alert import Alert
    from spendwatch.schemas.event import GatewayEvent
    from spendwatch.schemas.outcome import OutcomeEvent

    Record = GatewayEvent | OutcomeEvent


def _event_time(record: Record) -> datetime:
    return record.event_time


def run_backtest(
    records: Iterable[Record],
    settings: Settings | DetectorsConfig,
    *,
    on_record: Callable[[int], None] | None = None,
    drain: timedelta = timedelta(0),
    shard: tuple[int, int] | None = None,
) -> Iterator[Alert]:
    """Replay ``records`` through the detector engine; yield every notification in order.

    Parameters
    ----------
    records
        Gateway and outcome events, in any order (they are sorted by event time, stable).
    settings
        The full :class:`~spendwatch.config.Settings` or just its ``detectors`` section.
    on_record
        Called with the count of records processed so far, every 10,000 records (progress).
    drain
        Keep ticking this long after the last record, as a live worker would, so open
        episodes can repeat and resolve.
    shard
        ``(index, count)``: replay only the states whose key hashes to ``index`` of
        ``count`` (as a stream partition would); see :func:`run_backtest_parallel`.

    Examples
    --------
    >>> from decimal import Decimal
    >>> from spendwatch.schemas.event import GatewayEvent
    >>> events = [GatewayEvent(event_id=f"e{i}", event_time=datetime(2026, 11, 23, 9, i, tzinfo=UTC),
    ...                        gateway="litellm", api_key_hash="k1", session_id="s1", model="o3",
    ...                        cost_usd=Decimal("6")) for i in range(12)]
    >>> [(a.detector, a.action.value, a.summary) for a in run_backtest(events, DetectorsConfig())]
    [('session_burn', 'trigger', 'session s1 on key k1 spent $54.00 in 8 min (limit $50.00 per 60 min), mostly o3')]
    """
    config = settings if isinstance(settings, DetectorsConfig) else settings.detectors
    engine = Engine(config)
    clock = TickClock(config.tick_interval_seconds, config.idle_tick_seconds, int(config.clock_catchup_hours * 3600))
    states: dict[str, SubjectState] = {}
    hot: dict[str, SubjectState] = {}  # states with an active episode: ticked at every boundary
    timed: dict[str, SubjectState] = {}  # states with a detector that needs idle ticks
    ordered = sorted(records, key=_event_time)
    end = ordered[-1].event_time.timestamp() + drain.total_seconds() if ordered and drain else None
    for count, record in enumerate(chain(ordered, (None,)), 1):
        if record is None:  # after the last record: drain the clock
            if end is None or clock.next_tick is None:
                return
            ts = end
        else:
            ts = record.event_time.timestamp()
        for boundary, on_idle_boundary in clock.boundaries(ts, hot):
            now = datetime.fromtimestamp(boundary, UTC)
            for state in list({**timed, **hot}.values() if on_idle_boundary else hot.values()):
                alerts = engine.tick(state, now)
                if alerts:
                    yield from alerts
                if state.episodes.active:  # type: ignore[union-attr]
                    hot[state.key] = state
                else:
                    hot.pop(state.key, None)
        if record is None:
            return
        for key in engine.routes(record):
            if shard is not None and state_shard(key, shard[1]) != shard[0]:
                continue
            state = states.get(key)
            if state is None:
                state = states[key] = engine.new_state(key)
                if engine.needs_idle_ticks(state):
                    timed[key] = state
            alerts = engine.process(state, record)
            if alerts:
                yield from alerts
            if state.episodes.active:  # type: ignore[union-attr]
                hot[key] = state
            elif key in hot:
                del hot[key]
        if on_record is not None and not count % 10_000:
            on_record(count)


def state_shard(state_key: str, count: int) -> int:
    """Which of ``count`` shards owns a state key (stable across runs and machines)."""
    return zlib.crc32(state_key.encode()) % count


_SHARED: tuple[list[Any], Any, timedelta] | None = None  # what forked shard workers replay


def _replay_shard(args: tuple[int, int]) -> list[tuple[float, int, int, bytes]]:
    records, settings, drain = _SHARED  # type: ignore[misc]
    return [(alert.fired_at.timestamp(), args[0], seq, orjson.dumps(alert.model_dump(mode="json")))
            for seq, alert in enumerate(run_backtest(records, settings, drain=drain, shard=args))]


def run_backtest_parallel(
    records: list[Record], settings: Settings | DetectorsConfig, *, workers: int, drain: timedelta = timedelta(0)
) -> Iterator[bytes]:
    """:func:`run_backtest` sharded by state key over ``workers`` forked processes.

    States are independent (each sees only its own records and the shared tick boundaries),
    so every shard replays all records' clock but only its own states, and the union of the
    shards' notifications is exactly the single-process one. Yields canonical JSON of each
    notification, merged in event-time order (ties: by shard, then emission order).
    """
    global _SHARED
    ordered = sorted(records, key=_event_time)
    _SHARED = (ordered, settings, drain)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            shards = pool.map(_replay_shard, [(i, workers) for i in range(workers)])
    finally:
        _SHARED = None
    for _, _, _, line in heapq.merge(*shards):
        yield line


# -- reading input ------------------------------------------------------------------------
class InputStats:
    def __init__(self) -> None:
        self.lines = 0
        self.bad_lines = 0
        self.records = 0
        self.duplicates = 0  # records whose id came before (a gateway's retry): dropped, as the stream does
        self.errors: Counter[str] = Counter()
        self.examples: list[str] = []


def read_records(path: Path, settings: Settings, stats: InputStats, on_bytes: Callable[[int], None] | None = None
                 ) -> list[Record]:
    """Every good record in a JSON-lines file (``.gz`` too); bad lines are counted in ``stats``, never raised."""
    from spendwatch.schemas.adapters import parse_message_partial
    from spendwatch.streams.dedup import record_key

    records: list[Record] = []
    seen: set[str] = set()
    with path.open("rb") as raw:
        magic = raw.read(2)
    opener: Any = gzip.open if magic == b"\x1f\x8b" else open
    with opener(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            if on_bytes is not None:
                on_bytes(len(line))
            if not line.strip():
                continue
            stats.lines += 1
            result = parse_message_partial(line, settings.adapters)
            for record in result.records:
                record_id = record_key(record)
                if record_id in seen:
                    stats.duplicates += 1
                else:
                    seen.add(record_id)
                    records.append(record)
            if result.errors:
                stats.bad_lines += 1
                for error in result.errors:
                    kind = getattr(error, "error_type", type(error).__name__)
                    stats.errors[str(kind)] += 1
                    if len(stats.examples) < 5:
                        stats.examples.append(f"line {number}: {error}")
    stats.records = len(records)
    return records


# -- the command --------------------------------------------------------------------------
@click.command("backtest")
@click.argument("events", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="spendwatch YAML (the detectors: section is what you tune); defaults when omitted.")
@click.option("--alerts-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every notification here, one JSON object per line (required without --labels).")
@click.option("--drain-hours", default=24.0, show_default=True, type=click.FloatRange(0),
              help="Keep the clock ticking this long after the last event, so open episodes can resolve.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Replay in this many processes, sharded by state key like stream partitions (same pages).")
@click.option("--progress/--no-progress", default=True, help="Show progress bars (on stderr).")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Labelled incidents (CSV or JSON: family, key|team|session, start, end): score the pages "
              "against them (see docs/detectors.md, labelled evaluation).")
@click.option("--json", "as_json", is_flag=True, help="With --labels: print the evaluation as one JSON object.")
@click.option("--warmup-days", default=7.0, show_default=True, type=click.FloatRange(0),
              help="With --labels: pages in the first days are not counted as false pages.")
def backtest(events: Path, config_path: Path | None, alerts_out: Path | None, drain_hours: float, workers: int,
             progress: bool, labels_path: Path | None, as_json: bool, warmup_days: float) -> None:
    """Replay EVENTS.jsonl[.gz] through the detectors and write the pages they would have sent.

    With --labels, also score them: per incident family found / total, time to detect and the
    detector that paged first; false pages per 100 key-days after the warm-up; pages per detector.
    """
    if alerts_out is None and labels_path is None:
        raise click.UsageError("give --alerts-out (where to write the pages) and/or --labels (to score them)")
    labels = None
    if labels_path is not None:
        from spendwatch.detectors.evaluation import LabelError, read_labels

        try:
            labels = read_labels(labels_path)
        except LabelError as exc:
            raise click.ClickException(str(exc)) from exc
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from spendwatch.config import ConfigError, load_settings
    from spendwatch.gc_tuning import tune_for_long_lived_state

    console = Console(stderr=True)
    tune_for_long_lived_state()
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    stats = InputStats()
    actions: Counter[tuple[str, str]] = Counter()
    subjects: dict[str, set[str]] = {}
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not progress, transient=True) as bar:
        reading = bar.add_task("reading", total=events.stat().st_size)
        records = read_records(events, settings, stats, lambda n: bar.advance(reading, n))
        read_seconds = time.perf_counter() - started
        replay = bar.add_task("replaying", total=len(records))
        replay_started = time.perf_counter()
        notifications: list[dict[str, Any]] = []
        if alerts_out is not None:
            alerts_out.parent.mkdir(parents=True, exist_ok=True)
        with alerts_out.open("wb") if alerts_out is not None else contextlib.nullcontext() as out:
            if workers > 1:
                lines = run_backtest_parallel(records, settings, workers=workers, drain=timedelta(hours=drain_hours))
            else:
                lines = (orjson.dumps(alert.model_dump(mode="json")) for alert in run_backtest(
                    records, settings, drain=timedelta(hours=drain_hours),
                    on_record=lambda n: bar.update(replay, completed=n)))
            for line in lines:
                if out is not None:
                    out.write(line + b"\n")
                alert = orjson.loads(line)
                if alert["action"] != "resolve":
                    notifications.append(alert)
                actions[(alert["detector"], alert["action"])] += 1
                subjects.setdefault(alert["detector"], set()).add(f"{alert['scope']}:{alert['subject']}")
        bar.update(replay, completed=len(records))
        replay_seconds = time.perf_counter() - replay_started

    if labels is not None:
        from spendwatch.detectors.evaluation import Directory, evaluate, format_report

        report = evaluate(labels, notifications, Directory.from_records(records, warmup_days), warmup_days=warmup_days,
                          detectors=settings.detectors.detector_settings())
        if as_json:
            click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        else:
            click.echo(format_report(report))
    table = Table(title="Pages per detector")
    for column in ("detector", "triggers", "repeats", "resolves", "subjects"):
        table.add_column(column, justify="left" if column == "detector" else "right")
    for name in settings.detectors.detector_settings():
        table.add_row(name, str(actions[(name, "trigger")]), str(actions[(name, "repeat")]),
                      str(actions[(name, "resolve")]), str(len(subjects.get(name, ()))))
    console.print(table)
    rate = len(records) / replay_seconds if replay_seconds else float("inf")
    console.print(
        f"{stats.lines:,} lines, {stats.records:,} records, {stats.bad_lines:,} bad lines, "
        f"{stats.duplicates:,} repeated ids dropped; "
        f"read in {read_seconds:.1f}s, replayed in {replay_seconds:.1f}s ({rate:,.0f} records/s); "
        f"{sum(actions.values()):,} notifications" + (f" -> {alerts_out}" if alerts_out else "")
    )
    if stats.bad_lines:
        console.print(f"[yellow]bad lines by error: {dict(stats.errors)}[/yellow]")
        for example in stats.examples:
            console.print(f"  [yellow]{example}[/yellow]")
