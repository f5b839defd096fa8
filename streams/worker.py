"""``spendwatch worker``: run one stream worker; start more to scale out over partitions.

Programmatic use (tests, the demo)::

    python -m spendwatch.streams.worker --config spendwatch.yaml --web-port 6067

When ``kafka.bootstrap_servers`` is unset the worker starts the embedded broker under
``data_dir`` first (local development only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spendwatch import broker_quirks
from spendwatch.gc_tuning import tune_for_long_lived_state

if TYPE_CHECKING:
    from spendwatch.config import Settings
    from spendwatch.streams.app import StreamsApp
    from spendwatch.web import HealthChecks

log = logging.getLogger(__name__)


def build_worker_app(settings: Settings, *, bootstrap_servers: str, web_port: int | None = None,
                     node_name: str | None = None) -> StreamsApp:
    """The app with its agents and the processor wired in (not started)."""
    from spendwatch.detectors.engine import Engine
    from spendwatch.streams.agents import register_agents
    from spendwatch.streams.app import create_app
    from spendwatch.streams.processor import StreamProcessor

    streams = create_app(settings, bootstrap_servers=bootstrap_servers, web_port=web_port, node_name=node_name)
    processor = StreamProcessor(streams, Engine(settings.detectors))
    register_agents(streams, processor)
    mount_observability(streams)
    return streams


def mount_observability(streams: StreamsApp, clock: Callable[[], float] = time.monotonic) -> HealthChecks | None:
    """Serve /metrics, /healthz and /readyz on the worker's web server; returns their checks.

    Ready once the worker has its partitions; not alive once it has waited longer than
    ``streams.unassigned_unhealthy_s`` for them (:mod:`spendwatch.streams.assignment_watch`).
    """
    try:
        from spendwatch.web import add_faust_observability_routes
    except ImportError:  # pragma: no cover - the web module is written in parallel
        return None
    from spendwatch.streams.assignment_watch import AssignmentWatch

    checks = add_faust_observability_routes(streams.app)
    checks.set_ready("kafka", False, "no partitions assigned yet")
    watch = AssignmentWatch(streams.settings.streams.unassigned_unhealthy_s, clock)
    checks.add_liveness_check("partitions", watch.check)

    @streams.app.on_partitions_assigned.connect
    async def _ready(app, assigned, **kwargs) -> None:  # noqa: ANN001 - a Faust signal
        watch.assigned()
        checks.set_ready("kafka", True)

    @streams.app.on_partitions_revoked.connect
    async def _rebalancing(app, revoked, **kwargs) -> None:  # noqa: ANN001 - a Faust signal
        watch.rebalancing()

    return checks


def ensure_topics(streams: StreamsApp, bootstrap_servers: str) -> None:
    """Create the pipeline's topics with the configured partition count when they do not exist.

    The routed topic and the state changelog must have exactly ``streams.partitions``
    partitions (state key -> partition); an existing one with another count is an error.
    """
    from spendwatch.broker import create_topics
    from spendwatch.kafka_security import client_options

    options = client_options(streams.settings.kafka.security)
    asyncio.run(create_topics(bootstrap_servers, streams.source_topics(), compacted={streams.changelog_topic},
                              replication_factor=streams.settings.streams.replication_factor, client_options=options))
    topics = streams.settings.kafka.topics
    counts = asyncio.run(_partition_counts(bootstrap_servers, [topics.routed, streams.changelog_topic, topics.raw],
                                           options))
    raw_count = counts.pop(topics.raw)
    if raw_count != streams.partitions:
        log.warning("topic %s has %d partitions, not streams.partitions (%d): retry dedup ids are kept in memory "
                    "only (a copy arriving after a restart or rebalance is counted again)",
                    topics.raw, raw_count, streams.partitions)
    streams.app.processor.set_ids_durable(raw_count == streams.partitions)
    for topic, count in counts.items():
        if count != streams.partitions:
            raise click.ClickException(
                f"topic {topic} has {count} partitions but streams.partitions is {streams.partitions}: "
                "set streams.partitions to match, or use new topic names (kafka.topics.routed, streams.app_id)")


async def _partition_counts(bootstrap_servers: str, topics: list[str], options: dict[str, Any]) -> dict[str, int]:
    from aiokafka import AIOKafkaConsumer

    from spendwatch.streams import faust_internals

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, **options)
    await consumer.start()
    try:
        await faust_internals.force_metadata_update(consumer)
        return {t: len(consumer.partitions_for_topic(t) or ()) for t in topics}
    finally:
        await consumer.stop()


def check_local_state(streams: StreamsApp, bootstrap_servers: str) -> None:
    """Discard local state partitions the changelog does not back (:mod:`spendwatch.streams.local_state`)."""
    from spendwatch.kafka_security import client_options
    from spendwatch.streams.local_state import changelog_ends, discard_state_ahead_of_changelog

    if not hasattr(streams.state.data, "partition_path"):
        return
    ends = asyncio.run(changelog_ends(bootstrap_servers, streams.changelog_topic, streams.partitions,
                                      client_options(streams.settings.kafka.security)))
    discard_state_ahead_of_changelog(streams, ends)


def take_over_from_previous_incarnation(streams: StreamsApp, bootstrap_servers: str) -> None:
    """Remove this node's dead predecessor from the consumer group (:mod:`spendwatch.streams.membership`)."""
    from spendwatch.kafka_security import client_options
    from spendwatch.streams.membership import evict_previous_incarnations

    if streams.settings.streams.static_membership or streams.member_client_id is None:
        return
    try:
        asyncio.run(evict_previous_incarnations(bootstrap_servers, streams.app.conf.id, streams.member_client_id,
                                                client_options(streams.settings.kafka.security)))
    except Exception as exc:  # noqa: BLE001 - best effort: the session timeout removes it anyway
        log.warning("could not check the group for a previous incarnation of this worker (%r): a crashed "
                    "predecessor keeps its partitions until its session times out", exc)


def run_worker(settings: Settings, *, web_port: int | None = None, loglevel: str = "info",
               node_name: str | None = None) -> None:
    """Run a worker in the foreground until SIGTERM/SIGINT (blocking)."""
    import faust

    from spendwatch.streams import faust_internals

    with ExitStack() as stack:
        bootstrap = settings.kafka.bootstrap_servers
        if not bootstrap:
            from spendwatch.broker import start_for_role

            broker = start_for_role(Path(settings.data_dir) / "kafka", "worker")
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
            log.warning("kafka.bootstrap_servers is unset: started the embedded broker on %s", bootstrap)
        faust_internals.check()  # before anything relies on Faust's or aiokafka's internals
        broker_quirks.apply(settings.kafka.broker)
        streams = build_worker_app(settings, bootstrap_servers=bootstrap, web_port=web_port, node_name=node_name)
        ensure_topics(streams, bootstrap)
        check_local_state(streams, bootstrap)
        take_over_from_previous_incarnation(streams, bootstrap)
        worker = faust.Worker(streams.app, loglevel=loglevel)
        # Faust's terminal spinner sets the root logger to DEBUG so that every log call spins it: each of
        # aiokafka's per-request log.debug() calls would then build a LogRecord (~6% of a busy worker).
        worker.spinner = None
        # Faust sets in_worker in Worker.on_start; the commit hook needs the consumer earlier, and a consumer
        # created outside a worker would freeze in_transaction (exactly-once) to False.
        streams.app.in_worker = True
        streams.app.processor.install()
        tune_for_long_lived_state()
        worker.execute_from_commandline()


@click.command("worker")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              envvar="SPENDWATCH_CONFIG", help="spendwatch YAML config (default: built-in defaults).")
@click.option("--web-port", type=int, default=None,
              help="Port of the worker's web server (/metrics, /healthz); default streams.web_port.")
@click.option("--bootstrap-servers", default=None, help="Override kafka.bootstrap_servers.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Override data_dir.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def worker(config_path: str | None, web_port: int | None, bootstrap_servers: str | None, data_dir: str | None,
           loglevel: str) -> None:
    """Run a stream worker: raw gateway messages -> canonical events, dead letters, detector state, alerts."""
    from spendwatch.config import load_settings

    settings = load_settings(config_path)
    updates: dict = {}
    if bootstrap_servers:
        updates["kafka"] = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    if data_dir:
        updates["data_dir"] = Path(data_dir)
    if updates:
        settings = settings.model_copy(update=updates)
    run_worker(settings, web_port=web_port, loglevel=loglevel)


if __name__ == "__main__":
    worker()
