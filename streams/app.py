"""The Faust app: every topic and table of the stream pipeline, declared in one place.

::

    raw ──parse──▶ events, outcomes (canonical JSON, keyed by the key scope) ──▶ ClickHouse sink
      │      └───▶ dead_letters (what failed, why, source offset, original bytes)
      └──route──▶ routed (envelopes of records, partitioned by detector state key)
                     └──detect──▶ alerts (keyed by dedup_key) ──▶ pagers
                             └──▶ detector-state table (changelog: <app_id>-detector-state-changelog)

The agents are in :mod:`spendwatch.streams.agents`, the logic they call in
:mod:`spendwatch.streams.pipeline`, :mod:`spendwatch.streams.detection` and
:mod:`spendwatch.streams.processor`.
"""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faust

from spendwatch.kafka_security import faust_credentials
from spendwatch.streams.faust_internals import HookedApp
from spendwatch.streams.membership import member_client_id
from spendwatch.streams.partitioner import CachedDefaultPartitioner

if TYPE_CHECKING:
    from spendwatch.config import Settings

STATE_TABLE = "detector-state"


class SpendwatchApp(HookedApp):
    """A Faust app that lets the stream processor commit its hot state before partitions are revoked.

    Its consumer hands messages to the agents without Faust's per-message tasks
    (:class:`spendwatch.streams.faust_internals.FastDrainConsumer`).
    """

    @property
    def processor(self) -> Any:
        """The worker's stream processor (None until wired); it commits before a revoke, forgets after."""
        return self.revoke_hooks

    @processor.setter
    def processor(self, processor: Any) -> None:
        self.revoke_hooks = processor


@dataclass
class StreamsApp:
    """The app with its topics and its one table."""

    app: SpendwatchApp
    raw: faust.TopicT
    routed: faust.TopicT
    state: faust.types.TableT
    settings: Settings
    #: the worker's Kafka client id when its node name is stable (see :mod:`spendwatch.streams.membership`)
    member_client_id: str | None = None

    @property
    def partitions(self) -> int:
        return self.settings.streams.partitions

    def source_topics(self) -> dict[str, int]:
        """Every topic the pipeline reads or writes, with its partition count (created at worker start)."""
        t = self.settings.kafka.topics
        names = (t.raw, t.routed, t.events, t.outcomes, t.alerts, t.dead_letters, self.changelog_topic)
        return {name: self.partitions for name in names}

    @property
    def changelog_topic(self) -> str:
        """The state table's changelog (compacted): created with the same partition count as ``routed``."""
        return self.state.changelog_topic.get_topic_name()


def resolve_store(store: str) -> str:
    """``auto`` -> ``rocksdb://`` when rocksdict is installed, else ``memory://``."""
    if store != "auto":
        return store
    return "rocksdb://" if importlib.util.find_spec("rocksdict") else "memory://"


def create_app(settings: Settings, *, bootstrap_servers: str, web_port: int | None = None,
               node_name: str | None = None) -> StreamsApp:
    """Declare the app, its topics and its table from the settings."""
    streams = settings.streams
    topics = settings.kafka.topics
    port = streams.web_port if web_port is None else web_port
    node = node_name or f"{socket.gethostname()}-{port}"
    # with web port 0 the node name is not one process's: no client id that names a unique worker
    client_id = member_client_id(node) if node_name or port else None
    datadir = Path(settings.data_dir) / "streams" / node
    datadir.mkdir(parents=True, exist_ok=True)
    app = SpendwatchApp(
        streams.app_id,
        broker=[f"kafka://{server.strip()}" for server in bootstrap_servers.split(",")],
        store=resolve_store(streams.store),
        datadir=str(datadir),
        processing_guarantee=streams.processing_guarantee,
        topic_partitions=streams.partitions,
        topic_replication_factor=streams.replication_factor,
        # Offsets are committed by the processor's commit hook, right after it flushes hot state.
        broker_commit_interval=streams.commit_interval_s,
        broker_commit_every=1 << 30,
        # Records held in the reorder buffer keep their message unacknowledged on purpose.
        stream_wait_empty=False,
        stream_buffer_maxsize=max(4096, streams.batch_size * 2),
        broker_max_poll_records=max(500, streams.batch_size),
        broker_credentials=faust_credentials(settings.kafka.security),
        producer_partitioner=CachedDefaultPartitioner(),
        producer_linger=streams.producer_linger_ms / 1000,
        producer_max_batch_size=streams.producer_max_batch_size,
        producer_compression_type=None if streams.compression_type == "none" else streams.compression_type,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        # Faust compares the store with a cached offset that is unknown before the first fetch (-1) and stops
        # the worker; the worker checks the store against the changelog itself at start-up (streams/local_state.py)
        recovery_consistency_check=False,
        broker_session_timeout=streams.session_timeout_s,
        consumer_group_instance_id=node if streams.static_membership else None,
        broker_heartbeat_interval=streams.heartbeat_interval_s,
        broker_rebalance_timeout=streams.rebalance_timeout_s,
        **({"broker_client_id": client_id} if client_id else {}),
        web_enabled=True,
        web_bind=streams.web_host,
        web_host=streams.web_host,
        web_port=port,
        web_in_thread=False,
    )
    raw = app.topic(topics.raw, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                    partitions=streams.partitions)
    routed = app.topic(topics.routed, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=streams.partitions)
    state = app.Table(
        STATE_TABLE, default=None, partitions=streams.partitions, key_type=bytes, value_type=bytes,
        help="Detector state per state key (engine snapshots) and per-partition stream metadata.",
    )
    return StreamsApp(app=app, raw=raw, routed=routed, state=state, settings=settings, member_client_id=client_id)
