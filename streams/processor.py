"""The stream processor: what the agents call, assembled from one module per job.

Two stages run in every worker:

* **parse** (raw topic, :mod:`spendwatch.streams.parse_stage`): parse a batch, produce
  canonical events/outcomes, dead letters and routed envelopes, then acknowledge the raw
  messages; retried copies are dropped with ids restored across owners
  (:mod:`spendwatch.streams.dedup_restore`);
* **detect** (routed topic, :mod:`spendwatch.streams.detect_stage`): feed envelopes to the
  :class:`PartitionDetector` of their partition (hot state in memory) and acknowledge each
  envelope once all its records are processed.

How state, alerts and offsets commit together is :mod:`spendwatch.streams.commit_protocol`;
the local store is written after each commit by :mod:`spendwatch.streams.store_writes`, and
the consumer lag reported by :mod:`spendwatch.streams.lag_metrics`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from faust.types import TP

from spendwatch.streams.commit_protocol import CommitProtocol
from spendwatch.streams.dedup_restore import DedupRestore
from spendwatch.streams.detect_stage import DetectStage
from spendwatch.streams.detection import PartitionDetector
from spendwatch.streams.parse_stage import ParseStage
from spendwatch.streams.redelivery import RedeliveryGuard
from spendwatch.streams.store_writes import StoreWrites

if TYPE_CHECKING:
    from faust.types import EventT

    from spendwatch.detectors.engine import Engine
    from spendwatch.streams.app import StreamsApp
    from spendwatch.streams.faust_internals import ConsumerOriginals


class StreamProcessor(ParseStage, DetectStage, CommitProtocol):
    """Handlers for the two stages plus the commit hook; one per worker. Holds the state the stages share."""

    def __init__(self, streams: StreamsApp, engine: Engine) -> None:
        self.streams = streams
        self.app = streams.app
        self.engine = engine
        self.settings = streams.settings
        self.topics = self.settings.kafka.topics
        self.partitions = streams.partitions
        self.lock = asyncio.Lock()  # held by both stages' handlers and the commit
        self.detectors: dict[int, PartitionDetector] = {}
        self.redelivery = RedeliveryGuard()
        # the worker checks the raw topic's partitions and calls set_ids_durable (worker.ensure_topics)
        self.dedup = DedupRestore(self.settings.streams.dedup_window_records, self.topics.raw, durable=True)
        self.store_writes = StoreWrites(streams.state)
        self.unacked: dict[int, dict[int, EventT]] = defaultdict(dict)  # routed partition -> offset -> event
        self.done: dict[int, set[int]] = defaultdict(set)  # routed partition -> offsets processed, not yet acked
        self.last_input: dict[int, float] = {}
        self.inflight: list[Any] = []  # produce futures of the parse stage, awaited before each commit
        self._last_meta: dict[int, bytes] = {}
        self._originals: ConsumerOriginals | None = None
        self._held_resume: set[TP] = set()
        self._send_error: BaseException | None = None
        self.events_parsed = 0
        self.alerts_sent = 0

    def set_ids_durable(self, durable: bool) -> None:
        """Whether retry-dedup ids are committed with the raw offsets (see :meth:`DedupRestore.set_durable`)."""
        self.dedup.set_durable(durable)
