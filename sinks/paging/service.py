"""The pager service: alerts topic -> routing, grouping, silences, inhibition -> PagerDuty / Slack / console.

Run it with ``spendwatch pager`` or embed :class:`PagerService` in an asyncio program
(the demo and the worker do). Run one replica per consumer group: groups span
partitions, and the transactional id fences a second copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from aiokafka.errors import KafkaConnectionError

from spendwatch.metrics import DEAD_LETTERS
from spendwatch.schemas.alert import Alert
from spendwatch.schemas.dead_letter import DeadLetter
from spendwatch.sinks.paging.config import PagingConfig, env_value
from spendwatch.sinks.paging.console import ConsoleIntegration
from spendwatch.sinks.paging.delivery import (
    DeliveryLog, DeliveryWorker, Integration, OffsetTracker, firing_record, paged_record, pending_record,
)
from spendwatch.sinks.paging.grouping import Dispatcher, IntegrationSpec
from spendwatch.sinks.paging.pagerduty import PagerDutyIntegration
from spendwatch.sinks.paging.slack import SlackIntegration, SlackWebhookIntegration
from spendwatch.streams.config import TopicsConfig
from spendwatch.web import metrics_port_option

log = logging.getLogger(__name__)

DELIVERY_LOG_TOPIC_DEFAULT = "spendwatch-pager-log"


class PagingSetupError(ValueError):
    """A receiver names an environment variable that is not set."""


def build_integrations(config: PagingConfig) -> dict[str, list[Integration]]:
    """Receiver name -> its integrations, with secrets read from the environment now."""
    out: dict[str, list[Integration]] = {}
    for receiver in config.receivers:
        items: list[Integration] = out.setdefault(receiver.name, [])
        for i, pd in enumerate(receiver.pagerduty):
            spec = IntegrationSpec(f"{receiver.name}/pagerduty/{i}", receiver.name, pd.send_resolved)
            key = env_value(pd.routing_key_env)
            if key is None:
                if pd.skip_if_unset:
                    continue
                raise PagingSetupError(f"receiver {receiver.name!r}: environment variable {pd.routing_key_env} (PagerDuty routing key) is not set")
            items.append(PagerDutyIntegration(spec, pd, key, config))
        for i, sl in enumerate(receiver.slack):
            spec = IntegrationSpec(f"{receiver.name}/slack/{i}", receiver.name, sl.send_resolved)
            if sl.webhook_url_env:
                url = env_value(sl.webhook_url_env)
                if url is None:
                    if sl.skip_if_unset:
                        continue
                    raise PagingSetupError(f"receiver {receiver.name!r}: environment variable {sl.webhook_url_env} (Slack webhook URL) is not set")
                items.append(SlackWebhookIntegration(spec, sl, url, config))
                continue
            token, channel = env_value(sl.bot_token_env), sl.channel or env_value(sl.channel_env)
            if token is None or channel is None:
                if sl.skip_if_unset:
                    continue
                missing = sl.bot_token_env if token is None else sl.channel_env
                raise PagingSetupError(f"receiver {receiver.name!r}: environment variable {missing} (Slack) is not set")
            items.append(SlackIntegration(spec, sl, token, channel, config))
        for i, console in enumerate(receiver.console):
            items.append(ConsoleIntegration(IntegrationSpec(f"{receiver.name}/console/{i}", receiver.name, console.send_resolved), console))
    return out


class PagerService:
    """Consumes alerts (read_committed), decides, and delivers exactly once per integration.

    Parameters
    ----------
    bootstrap_servers
        Kafka bootstrap servers.
    topics
        Topic names; ``alerts`` is consumed, ``dead_letters`` receives undeliverable pages,
        ``pager_log`` (if the field exists) holds the delivery log.
    config
        The ``paging`` section.
    """

    def __init__(self, bootstrap_servers: str, topics: TopicsConfig, config: PagingConfig, *,
                 log_partitions: int = 1, alerts_partitions: int = 8, poll_interval: float = 0.5,
                 replication_factor: int = 1, client_options: Mapping[str, Any] | None = None):
        self.bootstrap_servers = bootstrap_servers
        self.replication_factor = replication_factor
        self.client_options = dict(client_options or {})
        self.topics = topics
        self.config = config
        self.log_topic = getattr(topics, "pager_log", DELIVERY_LOG_TOPIC_DEFAULT)
        self.log_partitions = log_partitions
        self.alerts_partitions = alerts_partitions
        self.poll_interval = poll_interval
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self.workers: dict[str, DeliveryWorker] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> PagerService:
        """Build from the top-level :class:`spendwatch.config.Settings` (bootstrap servers must be resolved)."""
        from spendwatch import broker_quirks
        from spendwatch.kafka_security import client_options

        broker_quirks.apply(settings.kafka.broker)
        return cls(settings.kafka.bootstrap_servers, settings.kafka.topics, settings.paging,
                   alerts_partitions=settings.streams.partitions,
                   replication_factor=settings.streams.replication_factor,
                   client_options=client_options(settings.kafka.security))

    def stop(self) -> None:
        """Ask the service to stop after the current batch (it does not flush waiting groups early)."""
        self._stopping.set()

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from spendwatch.broker import create_topics

        connection = {"replication_factor": self.replication_factor, "client_options": self.client_options}
        await create_topics(self.bootstrap_servers, {self.topics.alerts: self.alerts_partitions,
                                                     self.topics.dead_letters: self.alerts_partitions}, **connection)
        await create_topics(self.bootstrap_servers, {self.log_topic: self.log_partitions}, compacted={self.log_topic},
                            **connection)
        integrations = build_integrations(self.config)
        specs = {name: [i.spec for i in items] for name, items in integrations.items()}
        delivery_log = DeliveryLog(self.bootstrap_servers, self.log_topic, self.config.transactional_id,
                                   self.config.consumer_group, self.topics.dead_letters,
                                   client_options=self.client_options)
        # All partitions, assigned by us: the pager is a single active instance (the transactional id
        # fences any other), so there is no group rebalance to wait for after a crash. The group id
        # only names where the offsets are committed.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, **self.client_options, group_id=self.config.consumer_group,
            enable_auto_commit=False, isolation_level="read_committed", auto_offset_reset="earliest",
        )
        tasks: list[asyncio.Task] = []
        try:
            state = await delivery_log.start()
            await self._forget_old_episodes(state, delivery_log)
            dispatcher = Dispatcher(self.config, specs)
            dispatcher.restore(state.firing.values(), state.paged)
            by_id = {i.spec.id: i for items in integrations.values() for i in items}
            self.workers = {iid: DeliveryWorker(i, delivery_log, state.roots, self.config.retry, self.topics.alerts)
                            for iid, i in by_id.items()}
            for n in state.pending:
                if n.integration in self.workers:
                    self.workers[n.integration].submit(n, recovering=True)
                else:
                    log.warning("pending notification %s for %s, which is no longer configured: dropped", n.id, n.integration)
                    await delivery_log.commit([pending_record(n, done=True)])
            tasks = [asyncio.create_task(w.run(), name=f"pager-{iid}") for iid, w in self.workers.items()]
            await consumer.start()
            await consumer.topics()  # refreshes metadata
            partitions = sorted(consumer.partitions_for_topic(self.topics.alerts) or [])
            consumer.assign([TopicPartition(self.topics.alerts, p) for p in partitions])
            self.ready.set()
            log.info("pager consuming %s with %d integrations: %s", self.topics.alerts, len(by_id), ", ".join(by_id))
            await self._loop(consumer, dispatcher, delivery_log, tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await delivery_log.stop()
            for items in integrations.values():
                for integration in items:
                    with contextlib.suppress(Exception):
                        await integration.close()

    async def _forget_old_episodes(self, state: Any, delivery_log: DeliveryLog) -> None:
        """Tombstone what the log remembers about episodes resolved longer than ``log_retention`` ago."""
        from datetime import UTC, datetime

        from spendwatch.schemas.alert import Action

        horizon = datetime.now(UTC) - self.config.log_retention
        old = [k for k, p in state.paged.items() if p.action == Action.resolve and p.fired_at < horizon]
        for key in old:
            del state.paged[key]
        if old:
            await delivery_log.commit([(f"p|{iid}|{dedup_key}", None) for iid, dedup_key in old])
            log.info("delivery log: forgot %d episodes resolved before %s", len(old), horizon.isoformat())

    async def _loop(self, consumer: Any, dispatcher: Dispatcher, delivery_log: DeliveryLog, tasks: list[asyncio.Task]) -> None:
        tracker = OffsetTracker()
        while not self._stopping.is_set():
            for task in tasks:
                if task.done():
                    task.result()  # a worker crashed: surface it
            deadline = dispatcher.next_deadline()
            wait = self.poll_interval if deadline is None else min(self.poll_interval, max(0.0, deadline - time.monotonic()))
            batch = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=500)
            now = time.monotonic()
            dead: list[DeadLetter] = []
            for tp, messages in batch.items():
                for m in messages:
                    tracker.consumed_one(tp, m.offset)
                    try:
                        alert = Alert.model_validate_json(m.value)
                    except ValueError as exc:
                        DEAD_LETTERS.labels(stage="pager", error_type="validation").inc()
                        dead.append(DeadLetter.for_bytes(m.value or b"", reason=f"not a valid Alert: {exc}"[:2000],
                                                         error_type="validation", stage="pager", source_topic=tp.topic,
                                                         source_partition=tp.partition, source_offset=m.offset))
                        tracker.done((tp, m.offset))
                        continue
                    for ref in dispatcher.ingest(alert, (tp, m.offset), now):
                        tracker.done(ref)
            result = dispatcher.flush_due(time.monotonic())
            for ref in result.done_refs:
                tracker.done(ref)
            for notification_id, reason in result.muted:
                log.info("muted %s: %s", notification_id, reason)
            records = [pending_record(n) for n in result.notifications]
            records += [paged_record(iid, key, paged) for (iid, key), paged in result.paged.items()]
            records += [firing_record(key, dispatcher.firing.get(key)) for key in sorted(dispatcher.dirty_firing)]
            dispatcher.dirty_firing.clear()
            offsets = tracker.committable()
            await delivery_log.commit(records, offsets, dead)
            tracker.mark_committed(offsets)
            for n in result.notifications:
                self.workers[n.integration].submit(n)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every submitted notification was delivered (tests, graceful shutdown)."""
        await asyncio.wait_for(asyncio.gather(*(w.queue.join() for w in self.workers.values())), timeout)


async def _run_until_signal(service: PagerService, metrics_port: int | None = None) -> None:
    import signal

    from spendwatch.web import observability_server

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)
    async with observability_server(metrics_port) as server:  # /metrics, /healthz, /readyz
        if server is not None:
            server.checks.add_readiness_check("alerts", lambda: (service.ready.is_set(), "not consuming alerts yet"))
        await service.run()


def describe_routes(config: PagingConfig, labels_text: str) -> str:
    """Where an alert with ``labels_text`` ('name=value ...') is routed, like ``amtool config routes test``."""
    from spendwatch.sinks.paging.routing import Route
    from spendwatch.sinks.paging.silences import Silencer

    labels = dict(pair.split("=", 1) for pair in labels_text.replace(",", " ").split() if "=" in pair)
    lines = []
    for route in Route.from_config(config.route).match(labels):
        receiver = next(r for r in config.receivers if r.name == route.receiver)
        kinds = [f"{kind} x{len(getattr(receiver, kind))}" for kind in ("pagerduty", "slack", "console") if getattr(receiver, kind)]
        lines.append(f"route {route.id} -> receiver {route.receiver} ({', '.join(kinds) or 'no integrations'}); "
                     f"group {route.group_labels(labels)}; wait {route.group_wait}, interval {route.group_interval}, "
                     f"repeat {route.repeat_interval}")
    for silence in Silencer(config.silences).silences:
        if all(m.matches(labels) for m in silence.matchers):
            lines.append(f"silenced {silence.starts_at:%Y-%m-%d %H:%M} .. {silence.ends_at:%Y-%m-%d %H:%M} UTC: {silence.comment}")
    return "\n".join(lines)


def unreachable_kafka(role: str, servers: str, exc: Exception) -> str:
    """The one line a role says when no broker answers at ``kafka.bootstrap_servers``."""
    from spendwatch.broker import ONE_BROKER_HINT

    return (f"{role}: no Kafka broker answers at {servers} ({exc.__class__.__name__}); is it running? "
            f"For a local setup, {ONE_BROKER_HINT}.")


def _resolve_bootstrap(settings: Any) -> tuple[str, Any]:
    if settings.kafka.bootstrap_servers:
        return settings.kafka.bootstrap_servers, None
    from spendwatch.broker import start_for_role

    broker = start_for_role(Path(settings.data_dir) / "kafka", "pager")
    return broker.bootstrap_servers, broker


@click.command("pager")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="spendwatch YAML file (the paging: section routes alerts).")
@click.option("--bootstrap-servers", default=None, help="Kafka bootstrap servers (overrides kafka.bootstrap_servers).")
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--route-test", "route_test", default=None, metavar="LABELS",
              help="Show where an alert with these labels would go ('team=payments scope=key severity=critical') and exit.")
@metrics_port_option
def pager(config_path: str | None, bootstrap_servers: str | None, log_level: str, route_test: str | None,
          metrics_port: int | None = None) -> None:
    """Consume the alerts topic and page owners through PagerDuty, Slack and the console.

    Secrets come from the environment: the variables named in the receivers, and for the
    default configuration SPENDWATCH_PAGERDUTY_ROUTING_KEY, SPENDWATCH_SLACK_BOT_TOKEN +
    SPENDWATCH_SLACK_CHANNEL, SPENDWATCH_SLACK_WEBHOOK_URL.
    """
    from spendwatch.config import ConfigError, load_settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if route_test is not None:
        click.echo(describe_routes(settings.paging, route_test))
        return
    if bootstrap_servers:
        settings.kafka.bootstrap_servers = bootstrap_servers
    servers, broker = _resolve_bootstrap(settings)
    settings.kafka.bootstrap_servers = servers
    try:
        service = PagerService.from_settings(settings)
        asyncio.run(_run_until_signal(service, metrics_port))
    except PagingSetupError as exc:
        raise click.ClickException(str(exc)) from exc
    except KafkaConnectionError as exc:
        raise click.ClickException(unreachable_kafka("pager", servers, exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        if broker is not None:
            broker.stop()
