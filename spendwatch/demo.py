"""``spendwatch demo``: the whole pipeline on one machine, with nothing installed but Python.

What runs, and who owns what:

* the embedded Kafka-protocol broker (a child process, :class:`spendwatch.broker.EmbeddedBroker`);
* one stream worker (a child process, ``python -m spendwatch.streams.worker``): raw gateway
  messages -> canonical events, detector state, alerts;
* the ClickHouse sink and the pager, inside this process: embedded chDB allows one process
  per data directory, so the process that reads the report at the end is the one that
  writes to it; the pager's console receiver prints pages here as they fire (and pages
  Slack / PagerDuty too when their variables are set: see ``spendwatch pager --help``);
* the replay: a synthetic week of multi-team traffic with every kind of incident
  (:mod:`spendwatch.traffic`), produced to the raw topic no faster than the worker keeps up.

At the end it prints a report from ClickHouse (spend by team and model, cache-hit ratio,
every incident with its time to detect against the generator's ground truth), leaves the
data in ``--data-dir`` for ``spendwatch report`` / ``spendwatch query``, and stops every
process it started, also on Ctrl-C or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from spendwatch.web import http_status

if TYPE_CHECKING:
    from rich.console import Console

    from spendwatch.config import Settings

log = logging.getLogger(__name__)

#: A file that marks a directory as the demo's own, so a re-run may wipe it.
MARKER = ".spendwatch-demo"
#: The console receiver's JSON lines, one per notification printed.
PAGE_LOG = "pages.jsonl"
#: Most records produced ahead of what the worker has parsed (keeps the replay "live").
PRODUCE_AHEAD = 20_000
#: The env vars that make the default pager configuration page real receivers.
RECEIVER_ENV = {
    "PagerDuty": ("SPENDWATCH_PAGERDUTY_ROUTING_KEY",),
    "Slack": ("SPENDWATCH_SLACK_BOT_TOKEN", "SPENDWATCH_SLACK_WEBHOOK_URL"),
}


class DemoError(click.ClickException):
    """The demo could not run; the message says why and what to do."""


# --- the data directory and the configuration -------------------------------------------


def prepare_data_dir(data_dir: Path) -> None:
    """Make ``data_dir`` empty and the demo's own; refuse a directory that is not a demo's."""
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise DemoError(f"{data_dir} is not empty and not a previous demo's data; pass another --data-dir")
        shutil.rmtree(data_dir)
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("created by `spendwatch demo`; the next demo run deletes this directory\n")


def demo_config(data_dir: Path, bootstrap_servers: str, worker_port: int, partitions: int,
                detectors: dict[str, Any] | None = None) -> dict[str, Any]:
    """The YAML the worker runs with, also left behind for ``spendwatch report --config``.

    ``detectors`` is the section for the synthetic organisation (its teams' budgets).
    """
    return {
        "data_dir": str(data_dir),
        "kafka": {"bootstrap_servers": bootstrap_servers, "broker": "noida-db"},
        "streams": {"partitions": partitions, "web_port": worker_port},
        # Bigger, fewer inserts: the demo shares two cores between the worker and chDB.
        "clickhouse": {"flush_interval_s": 2.0},
        # The synthetic week has fixed dates (spendwatch generate's default start), whatever day the demo runs.
        "adapters": {"event_time": {"enforce": False}},
        "paging": {
            # The replay compresses a week into minutes: wall-clock grouping waits are short.
            "route": {"receiver": "default", "group_by": ["..."], "group_wait": "1s", "group_interval": "2s",
                      "repeat_interval": "4h"},
            # The default receivers, and the console's pages kept as JSON lines too: the closing report
            # counts from them what was printed above.
            "receivers": _receivers_with_page_log(data_dir / PAGE_LOG),
        },
        **({"detectors": detectors} if detectors else {}),
    }


def _receivers_with_page_log(path: Path) -> list[dict[str, Any]]:
    from spendwatch.sinks.paging.config import _default_receivers

    receivers = [r.model_dump(mode="json", exclude_none=True) for r in _default_receivers()]
    for receiver in receivers:
        for console in receiver["console"]:
            console["path"] = str(path)
    return receivers


def budgets_for(traffic: Any) -> dict[str, Any] | None:
    """The ``detectors`` section with a quarterly budget per team of the synthetic organisation."""
    from spendwatch.traffic.budgets import suggested_config

    return suggested_config(traffic).get("detectors")


def write_config(path: Path, config: dict[str, Any]) -> Settings:
    from spendwatch.config import load_settings

    path.write_text("# Written by `spendwatch demo`.\n" + yaml.safe_dump(config, sort_keys=False))
    return load_settings(path)


# --- child processes ----------------------------------------------------------------------


@dataclass
class Child:
    """A child process in its own process group, its output in a log file."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Child:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise with the log's tail when the child died."""
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError(f"the {self.name} exited with code {self.proc.returncode}; its log "
                            f"({self.log_path}) ends with:\n{tail(self.log_path)}")

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def wait_ready(url: str, child: Child, timeout: float) -> None:
    """Poll ``url`` (a /readyz endpoint) until it answers 200; fail early if the child dies."""
    deadline = time.monotonic() + timeout
    while True:
        child.check()
        with contextlib.suppress(OSError, urllib.error.URLError):
            status = await asyncio.to_thread(http_status, url)
            if status == 200:
                return
        if time.monotonic() > deadline:
            raise DemoError(f"the {child.name} was not ready within {timeout:.0f}s ({url}); its log "
                            f"({child.log_path}) ends with:\n{tail(child.log_path)}")
        await asyncio.sleep(0.25)  # polling: the child offers no event to await


# --- the worker's progress, from its own /metrics -------------------------------------------


@dataclass(frozen=True)
class WorkerProgress:
    """What the worker's ``/metrics`` says it has done so far."""

    ok: int  # raw messages parsed into canonical events and outcomes
    dead: int  # raw messages sent to the dead-letter topic
    detector_batches: int
    alerts: int  # every alert: triggers, repeats and resolves
    episodes: int = 0  # triggers: one per episode

    @property
    def parsed(self) -> int:
        return self.ok + self.dead

    @classmethod
    def parse(cls, text: str) -> WorkerProgress:
        """Read the figures from a Prometheus exposition.

        >>> WorkerProgress.parse('''spendwatch_events_in_total{result="ok",source="kafka"} 40.0
        ... spendwatch_events_in_total{result="dead_letter",source="kafka"} 2.0
        ... spendwatch_detector_batch_seconds_count 7.0
        ... spendwatch_alerts_total{action="trigger",detector="burn_rate"} 3.0
        ... spendwatch_alerts_total{action="resolve",detector="burn_rate"} 1.0''')
        WorkerProgress(ok=40, dead=2, detector_batches=7, alerts=4, episodes=3)
        """
        from prometheus_client.parser import text_string_to_metric_families

        totals = {"ok": 0.0, "dead_letter": 0.0, "batches": 0.0, "alerts": 0.0, "episodes": 0.0}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "spendwatch_events_in_total" and s.labels.get("source") == "kafka":
                    totals["ok" if s.labels.get("result") == "ok" else "dead_letter"] += s.value
                elif s.name == "spendwatch_detector_batch_seconds_count":
                    totals["batches"] += s.value
                elif s.name == "spendwatch_alerts_total":
                    totals["alerts"] += s.value
                    if s.labels.get("action") == "trigger":
                        totals["episodes"] += s.value
        return cls(int(totals["ok"]), int(totals["dead_letter"]), int(totals["batches"]), int(totals["alerts"]),
                   int(totals["episodes"]))


async def scrape(url: str, attempts: int = 4) -> WorkerProgress:
    """The worker's progress; a worker busy with a large batch may answer late, so retry."""

    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback URL we built
            return resp.read().decode()

    for attempt in range(attempts):
        try:
            return WorkerProgress.parse(await asyncio.to_thread(get))
        except (TimeoutError, OSError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# --- the replay ------------------------------------------------------------------------------


@dataclass
class Replay:
    """The synthetic traffic of a window of days, produced in event-time order.

    The generator always builds at least a full week (its incidents sit in the last seven
    days); ``from_day`` and ``days`` choose which part of it is replayed.
    """

    days: float
    keys: int
    teams: int
    seed: int
    from_day: float = 0.0
    produced: int = 0
    event_ts: array = field(default_factory=lambda: array("d"))

    def traffic(self) -> Any:
        from spendwatch.traffic import Traffic

        return Traffic(max(7.0, self.from_day + self.days), self.seed, None, "all", self.keys, self.teams)

    def window(self, traffic: Any) -> tuple[float, float]:
        start = traffic.start_ts + self.from_day * 86400
        return start, min(traffic.end_ts, start + self.days * 86400)

    def truths_in_window(self, traffic: Any) -> list[Any]:
        """Incidents that start inside the replayed window, and negative scenarios that overlap it."""
        start, end = self.window(traffic)
        return [t for t in traffic.ground_truth()
                if (start <= t.start.timestamp() < end) or (t.negative and t.start.timestamp() < end
                                                             and t.end.timestamp() > start)]

    def records(self, traffic: Any) -> Iterator[tuple[bytes | None, bytes, float]]:
        """(key, canonical JSON, event timestamp) of every record in the window."""
        import orjson

        from spendwatch.traffic.generator import Outcome, outcome_dict, request_dict

        start, end = self.window(traffic)
        for n, item in enumerate(traffic.records()):
            if isinstance(item, Outcome):
                record = outcome_dict(item, f"out-{traffic.seed}-{n}")
            else:
                record = request_dict(item, f"evt-{traffic.seed}-{n}")
            ts = datetime.fromisoformat(record["event_time"]).timestamp()
            if ts < start:
                continue
            if ts >= end:
                break
            key = record.get("api_key_hash") or record.get("user")
            yield (key.encode() if key else None), orjson.dumps(record), ts

    def simulated_time(self, processed: int) -> float | None:
        """Event time of the ``processed``-th record produced (records are in event-time order)."""
        if not self.event_ts or processed <= 0:
            return None
        return self.event_ts[min(processed, len(self.event_ts)) - 1]


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """One ground-truth scenario and the first alert that matched it (if any)."""

    kind: str
    negative: bool
    subject: str
    expected_detector: str | None
    start: datetime
    bound_minutes: float | None
    detector: str | None = None
    fired_at: datetime | None = None
    summary: str = ""
    dedup_key: str | None = None  # the episode of the first matching alert

    @property
    def minutes_to_detect(self) -> float | None:
        if self.fired_at is None:
            return None
        return (self.fired_at - self.start).total_seconds() / 60


def match_detections(truths: list[Any], alerts: list[dict[str, Any]]) -> list[Detection]:
    """Pair each ground-truth scenario with the earliest trigger on its subject.

    ``alerts`` are trigger alerts as dicts with ``detector``, ``scope``, ``subject``,
    ``fired_at`` (aware datetime), ``summary`` and ``labels``. An alert matches a scenario
    when it names the scenario's key, team or session (directly or in its labels) and fired
    after the scenario started; the expected detector is preferred over any other.

    >>> from types import SimpleNamespace as NS
    >>> t0 = datetime(2026, 11, 7, 2, tzinfo=UTC)
    >>> truth = NS(kind="runaway_loop", negative=False, scope="key", subject="k1", session_id="s1",
    ...            detector="burn_rate", start=t0, ttd_bound_minutes=15, team="search")
    >>> alerts = [{"detector": "spend_spike", "scope": "key", "subject": "k1", "summary": "x", "labels": {},
    ...            "fired_at": t0.replace(hour=5)},
    ...           {"detector": "burn_rate", "scope": "session", "subject": "s1", "summary": "y", "labels": {},
    ...            "fired_at": t0.replace(minute=9)}]
    >>> d = match_detections([truth], alerts)[0]
    >>> d.detector, d.minutes_to_detect
    ('burn_rate', 9.0)
    """
    out = []
    for t in truths:
        names = {t.subject}
        if getattr(t, "session_id", None):
            names.add(t.session_id)
        candidates = []
        for a in alerts:
            if a["fired_at"] < t.start:
                continue
            labels = a.get("labels") or {}
            if t.scope == "team":
                hit = a["scope"] == "team" and a["subject"] == t.subject
            else:
                hit = a["subject"] in names or labels.get("key_hash") in names or labels.get("session_id") in names
            if hit:
                candidates.append(a)
        preferred = [a for a in candidates if a["detector"] == t.detector] or candidates
        first = min(preferred, key=lambda a: a["fired_at"], default=None)
        out.append(Detection(
            kind=t.kind, negative=t.negative, subject=t.subject, expected_detector=t.detector, start=t.start,
            bound_minutes=t.ttd_bound_minutes,
            detector=first["detector"] if first else None, fired_at=first["fired_at"] if first else None,
            summary=first["summary"] if first else "", dedup_key=first.get("dedup_key") if first else None,
        ))
    return out


@dataclass
class PagesPrinted:
    """What the console receiver printed, from its JSON lines (one per notification)."""

    first: set[str] = field(default_factory=set)  # episodes (dedup keys) whose first page was printed
    pages: int = 0  # first pages of episodes still firing when delivered
    cleared: int = 0  # first pages of episodes that fired and cleared within one group wait
    repeats: int = 0
    resolves: int = 0

    @classmethod
    def read(cls, path: Path) -> PagesPrinted:
        """Count a page log.

        >>> import json, tempfile
        >>> log = Path(tempfile.mkdtemp()) / "pages.jsonl"
        >>> _ = log.write_text("\\n".join(json.dumps(r) for r in [
        ...     {"announced": {"a": "trigger"}, "cleared": []}, {"announced": {"a": "repeat"}, "cleared": []},
        ...     {"announced": {"b": "resolve"}, "cleared": [{"dedup_key": "b"}]}, {"announced": {"a": "resolve"}}]))
        >>> printed = PagesPrinted.read(log)
        >>> sorted(printed.first), printed.pages, printed.cleared, printed.repeats, printed.resolves
        (['a', 'b'], 1, 1, 1, 1)
        """
        import orjson

        printed = cls()
        if not path.exists():
            return printed
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)
            cleared = {a["dedup_key"] for a in record.get("cleared") or ()}
            for key, action in (record.get("announced") or {}).items():
                if key in cleared:
                    printed.cleared += 1
                    printed.first.add(key)
                elif action == "trigger":
                    printed.pages += 1
                    printed.first.add(key)
                elif action == "repeat":
                    printed.repeats += 1
                else:
                    printed.resolves += 1
        return printed


def _ago(minutes: float | None) -> str:
    if minutes is None:
        return "-"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


async def print_report(console: Console, sink: Any, truths: list[Any], printed: PagesPrinted) -> list[Detection]:
    """The closing report, from ClickHouse through the sink's (the only) chDB client; ``printed`` is what the
    console receiver printed above."""
    from rich.table import Table

    from spendwatch.sinks.clickhouse.report import print_table

    total = (await sink.query(
        "SELECT sum(requests), toFloat64(sum(cost_usd)), sum(cache_read_tokens) / greatest(sum(input_tokens), 1) "
        "FROM spend_hourly WHERE dimension = 'all'"))[0]
    console.rule("[bold]Report (from ClickHouse)")
    console.print(f"{total[0]:,} requests, [bold]${total[1]:,.2f}[/bold] spent, prompt cache hit ratio "
                  f"[bold]{total[2]:.1%}[/bold]")

    for dimension, title, limit in (("team", "Spend by team", 12), ("model", "Spend by model", 8)):
        rows = await sink.query(
            "SELECT if(subject = '', '(none)', subject), sum(requests), toFloat64(sum(cost_usd)), "
            "sum(cache_read_tokens) / greatest(sum(input_tokens), 1) FROM spend_hourly "
            f"WHERE dimension = '{dimension}' GROUP BY subject ORDER BY sum(cost_usd) DESC LIMIT {limit}")
        table = Table(title=title, title_justify="left")
        for col, justify in ((dimension, "left"), ("requests", "right"), ("spend", "right"), ("cache hit", "right")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for name, requests, spend, cache in rows:
            table.add_row(str(name), f"{requests:,}", f"${spend:,.2f}", f"{cache:.0%}")
        print_table(console, table)

    raw_alerts = await sink.query(
        "SELECT detector, scope, subject, fired_at, summary, labels, dedup_key FROM alert_events "
        "WHERE action = 'trigger' ORDER BY fired_at")
    alerts = [{"detector": d, "scope": sc, "subject": su, "summary": sm, "labels": dict(lb), "dedup_key": dk,
               "fired_at": fa if fa.tzinfo else fa.replace(tzinfo=UTC)} for d, sc, su, fa, sm, lb, dk in raw_alerts]
    detections = match_detections(truths, alerts)
    table = Table(title="Injected incidents, time to detect in event time (UTC)", title_justify="left")
    for col in ("incident", "should page", "paged by", "started", "detected in", "bound", "first page"):
        table.add_column(col, no_wrap=True)
    for d in detections:
        if d.negative:
            continue
        ok = d.minutes_to_detect is not None and (d.bound_minutes is None or d.minutes_to_detect <= d.bound_minutes)
        page = "-" if d.dedup_key is None else "printed" if d.dedup_key in printed.first else "[red]not printed[/red]"
        table.add_row(d.kind, d.expected_detector or "-", d.detector or "[red]missed[/red]", d.start.strftime("%a %H:%M"),
                      f"[{'green' if ok else 'yellow'}]{_ago(d.minutes_to_detect)}[/]", _ago(d.bound_minutes), page)
    print_table(console, table)
    muted = len({a["dedup_key"] for a in alerts} - printed.first)
    console.print(f"{len(alerts)} episodes opened (the progress bar's count); printed above: "
                  f"{printed.pages + printed.cleared} first pages ({printed.cleared} of them fired and cleared within "
                  f"one group wait), {printed.repeats} repeats, {printed.resolves} resolves"
                  + (f"; {muted} not printed (muted: inhibited by an open page of their team, or silenced)"
                     if muted else ""))
    noisy = [d for d in detections if d.negative and d.fired_at is not None]
    quiet = [d for d in detections if d.negative and d.fired_at is None]
    console.print(f"Ordinary-life scenarios that must not page ({', '.join(d.kind for d in quiet + noisy)}): "
                  f"{len(quiet)} quiet"
                  + (f", [yellow]{len(noisy)} paged[/yellow] ({', '.join(d.kind for d in noisy)})" if noisy else ""))
    return detections


# --- the orchestration -----------------------------------------------------------------------


@dataclass
class DemoOptions:
    data_dir: Path
    days: float
    keys: int
    teams: int
    seed: int
    partitions: int
    from_day: float = 0.0
    startup_timeout: float = 180.0


async def run_demo(opts: DemoOptions, console: Console) -> list[Detection]:
    """Start everything, replay, report, stop everything (see the module docstring)."""
    from spendwatch.broker import EmbeddedBroker, create_topics, free_port

    began = time.monotonic()
    data_dir = opts.data_dir.resolve()
    prepare_data_dir(data_dir)
    logs = data_dir / "logs"
    _log_to_file(logs / "demo.log")
    replay = Replay(opts.days, opts.keys, opts.teams, opts.seed, opts.from_day)
    traffic = replay.traffic()
    truths = replay.truths_in_window(traffic)
    incidents = sorted({t.kind for t in truths if not t.negative})
    window = replay.window(traffic)
    console.print(f"[bold]spendwatch demo[/bold]: {opts.days:g} synthetic days "
                  f"({_day(window[0])} -> {_day(window[1])}), {opts.keys} API keys in {opts.teams} teams; "
                  f"incidents: {', '.join(incidents) or 'none in this window'}")
    for name, variables in RECEIVER_ENV.items():
        if any(os.environ.get(v) for v in variables):
            console.print(f"  pages also go to {name} ({' / '.join(v for v in variables if os.environ.get(v))} is set)")

    detectors = await asyncio.to_thread(budgets_for, traffic)
    broker = EmbeddedBroker(data_dir / "kafka", log_path=logs / "broker.log")
    worker: Child | None = None
    sink = pager = None
    pager_task: asyncio.Task | None = None
    try:
        await asyncio.to_thread(broker.start)
        worker_port = free_port()
        config_path = data_dir / "spendwatch.yaml"
        settings = write_config(config_path, demo_config(data_dir, broker.bootstrap_servers, worker_port,
                                                         opts.partitions, detectors))
        topics = settings.kafka.topics
        await create_topics(broker.bootstrap_servers, {
            t: opts.partitions for t in (topics.raw, topics.events, topics.outcomes, topics.alerts, topics.dead_letters)})
        console.print(f"  embedded Kafka on {broker.bootstrap_servers}; ClickHouse (chDB) in {data_dir / 'chdb'}")

        worker = Child("stream worker", [sys.executable, "-m", "spendwatch.streams.worker", "--config",
                                         str(config_path), "--loglevel", "warning"], logs / "worker.log").start()
        sink, pager, pager_task = await _start_sink_and_pager(settings, broker.bootstrap_servers)
        metrics_url = f"http://127.0.0.1:{worker_port}/metrics"
        await wait_ready(f"http://127.0.0.1:{worker_port}/readyz", worker, opts.startup_timeout)
        console.print(f"  worker ready (its metrics: {metrics_url}); pages print below as they fire")

        await _replay_with_progress(console, replay, traffic, broker.bootstrap_servers, topics.raw, metrics_url,
                                    worker, pager_task, lambda: _drain(settings, sink, pager, worker, metrics_url))
        detections = await print_report(console, sink, truths, PagesPrinted.read(data_dir / PAGE_LOG))
        console.rule()
        command, config = spendwatch_command(), _shortest(config_path)
        console.print(f"Done in {time.monotonic() - began:.0f}s. Data: {_shortest(data_dir)} (Kafka log, chDB, "
                      f"worker state, logs/, {PAGE_LOG}). Explore it (the demo week is in the past: `--since 7d` "
                      "counts back from its last event):")
        console.print(f"  {command} report --config {config} --since 7d")
        console.print(f"  {command} query --config {config} "
                      "\"SELECT team, sum(cost_usd) AS usd FROM events GROUP BY team ORDER BY usd DESC\"")
        return detections
    finally:
        if pager is not None:
            pager.stop()
        if pager_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(pager_task, 15)
        if sink is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(sink.stop(), 30)
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        await asyncio.to_thread(broker.stop)


def spendwatch_command(argv0: str | None = None) -> str:
    """How to run ``spendwatch`` again from here: as typed (``.venv/bin/spendwatch``) unless the same program
    is first on PATH, then plain ``spendwatch``; under ``python -m`` the console script beside the interpreter.

    >>> spendwatch_command("/nonexistent/bin/spendwatch")
    '/nonexistent/bin/spendwatch'
    """
    argv0 = argv0 if argv0 is not None else sys.argv[0]
    script = Path(argv0)
    if script.name != "spendwatch":
        beside = Path(sys.executable).with_name("spendwatch")
        script = beside if beside.exists() else Path("spendwatch")
    on_path = shutil.which("spendwatch")
    if on_path and script.exists() and Path(on_path).resolve() == script.resolve():
        return "spendwatch"
    return str(_shortest(script))


def _shortest(path: Path) -> Path:
    """``path`` relative to the working directory when it is inside it (what a user types), else absolute."""
    absolute = path.absolute()
    with contextlib.suppress(ValueError):
        return absolute.relative_to(Path.cwd())
    return absolute


def _log_to_file(path: Path) -> None:
    """This process's own components (sink, pager) log to logs/demo.log; the terminal shows pages."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for existing in root.handlers:
        if existing is not handler:
            existing.setLevel(logging.WARNING)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%a %d %b %H:%M")


async def _start_sink_and_pager(settings: Settings, bootstrap_servers: str) -> tuple[Any, Any, asyncio.Task]:
    from spendwatch.sinks.clickhouse.service import ClickHouseSink
    from spendwatch.sinks.paging.service import PagerService

    sink = ClickHouseSink(settings, bootstrap_servers=bootstrap_servers)
    await sink.start()
    pager = PagerService.from_settings(settings)
    pager_task = asyncio.create_task(pager.run(), name="demo-pager")
    ready = asyncio.create_task(pager.ready.wait())
    await asyncio.wait([pager_task, ready], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if pager_task.done():
        pager_task.result()  # it failed to start: say why
    return sink, pager, pager_task


async def _replay_with_progress(console: Console, replay: Replay, traffic: Any, bootstrap_servers: str, topic: str,
                                metrics_url: str, worker: Child, pager_task: asyncio.Task, drain: Any) -> None:
    """Produce the window while a progress bar follows the worker's synthetic clock; the bar stays up while
    ``drain()`` waits for the last detections and pages, so its final count is the final one."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    start, end = replay.window(traffic)
    latest = WorkerProgress(0, 0, 0, 0, 0)

    async def poll() -> WorkerProgress:
        nonlocal latest
        worker.check()
        if pager_task.done():
            pager_task.result()
        latest = await scrape(metrics_url)
        return latest

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[clock]}"),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("replaying", total=end - start, clock=_day(start), counts="")

        def show() -> None:
            sim = replay.simulated_time(latest.parsed)
            bar.update(task, completed=(sim - start) if sim else 0, clock=_day(sim or start),
                       counts=f"{latest.parsed:,}/{replay.produced:,} events, {latest.episodes} "
                       f"episode{'' if latest.episodes == 1 else 's'}")

        producing = asyncio.create_task(_produce(replay, traffic, bootstrap_servers, topic, poll))
        while not producing.done():
            await asyncio.wait([producing], timeout=0.5)
            if not producing.done():
                await poll()
            show()
        producing.result()
        while (await poll()).parsed < replay.produced:
            show()
            await asyncio.sleep(0.5)  # polling the worker's metrics: it offers no event to await
        draining = asyncio.create_task(drain())
        while not draining.done():
            await asyncio.wait([draining], timeout=0.5)
            await poll()
            show()
        draining.result()
        bar.update(task, completed=end - start)
        show()


async def _produce(replay: Replay, traffic: Any, bootstrap_servers: str, topic: str,
                   poll: Any) -> None:
    """Produce the window's records; stay at most PRODUCE_AHEAD records ahead of the worker."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        pending: list[asyncio.Future] = []
        for key, value, ts in replay.records(traffic):
            pending.append(await producer.send(topic, value, key=key))
            replay.event_ts.append(ts)
            replay.produced += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
                while replay.produced - (await poll()).parsed > PRODUCE_AHEAD:
                    await asyncio.sleep(0.2)  # polling the worker's metrics: it offers no event to await
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _drain(settings: Settings, sink: Any, pager: Any, worker: Child, metrics_url: str,
                 timeout: float = 120.0) -> None:
    """Wait until the worker is done detecting, ClickHouse has every alert and the pages went out."""
    from spendwatch import metrics

    deadline = time.monotonic() + timeout
    # 1. Detection: the worker releases its reorder buffers after idle_release_s without input.
    quiet_needed = settings.streams.idle_release_s + settings.streams.commit_interval_s + 2.0
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        worker.check()
        now = await scrape(metrics_url)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_needed:
            break
        await asyncio.sleep(0.5)  # polling the worker's metrics: it offers no event to await
    done = last or WorkerProgress(0, 0, 0, 0, 0)
    # 2. ClickHouse: every event, outcome and alert the worker emitted is stored (exactly once).
    while time.monotonic() < deadline:
        await sink.flush()
        events, alerts = (await sink.query(
            "SELECT (SELECT count() FROM events) + (SELECT count() FROM outcomes), (SELECT count() FROM alert_events)"))[0]
        if events >= done.ok and alerts >= done.alerts:
            break
        await asyncio.sleep(0.5)  # the sink offers no "caught up with the topic" event
    # 3. Pages: nothing new delivered for a few grouping intervals, then every queue empty.
    def delivered() -> float:
        return sum(s.value for m in (metrics.PAGES_SENT, metrics.PAGES_FAILED)
                   for f in m.collect() for s in f.samples if s.name.endswith("_total"))

    last_pages, quiet_since = delivered(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 4.0:
        await asyncio.sleep(0.5)  # the pager's grouping waits are wall-clock timers
        if (pages := delivered()) != last_pages:
            last_pages, quiet_since = pages, time.monotonic()
    with contextlib.suppress(asyncio.TimeoutError):
        await pager.drain(timeout=30)


@click.command("demo")
@click.option("--days", type=click.FloatRange(min=0.05), default=7, show_default=True,
              help="Synthetic days to replay. The generator builds a full week with its incidents spread over "
              "days 1-6; shorter runs replay part of it (see --from-day).")
@click.option("--from-day", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Start the replay this many days into the synthetic week (e.g. --from-day 3.5 --days 0.3 "
              "replays Thursday noon to evening: a session burning $100 and a retry storm).")
@click.option("--keys", type=click.IntRange(min=16), default=16, show_default=True,
              help="API keys in the synthetic organisation (12 carry the labelled scenarios).")
@click.option("--teams", type=click.IntRange(min=2, max=12), default=4, show_default=True, help="Teams.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the synthetic traffic.")
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True,
              help="Partitions of the demo's topics.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".spendwatch/demo"),
              show_default=True, help="Where the demo keeps Kafka, chDB and worker state (wiped at start).")
def demo(days: float, from_day: float, keys: int, teams: int, seed: int, partitions: int, data_dir: Path) -> None:
    """Run spendwatch end to end on embedded Kafka and ClickHouse over a synthetic week with incidents."""
    from rich.console import Console

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # soft_wrap: a printed command stays on one line to copy, also when piped (80 columns otherwise);
    # tables widen to their natural width (report.print_table)
    console = Console(soft_wrap=True)
    opts = DemoOptions(data_dir=data_dir, days=days, keys=keys, teams=teams, seed=seed, partitions=partitions,
                       from_day=from_day)
    loop = asyncio.new_event_loop()
    main = loop.create_task(run_demo(opts, console))
    received: list[int] = []

    def stop(signum: int) -> None:
        # Cancel the demo rather than raise KeyboardInterrupt at a random point: its
        # finally-blocks then stop the pager, the sink, the worker and the broker in order.
        received.append(signum)
        main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop, signum)
    try:
        loop.run_until_complete(main)
    except asyncio.CancelledError:
        console.print("[yellow]interrupted: every process the demo started is stopped[/yellow]")
        raise SystemExit(128 + (received[0] if received else signal.SIGINT)) from None
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


if __name__ == "__main__":
    demo()
