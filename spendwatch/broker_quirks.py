"""Client-side workarounds for known bugs of the local/test broker (noida-db), off for Apache Kafka.

**Stale aborted transactions.** A fetch response lists the aborted transactions that
overlap the fetched range, as ``(producer_id, first_offset)``; a ``read_committed``
consumer skips that producer's batches from ``first_offset`` until the producer's abort
marker. Apache Kafka lists only transactions whose abort marker lies at or after the
fetch offset. noida-db 0.2.3 lists *every* transaction ever aborted in the partition, so
once a transactional producer was fenced (a worker killed and restarted reuses its
transactional ids, hence its producer id), every later fetch re-marks that producer as
aborted and the consumer silently skips its newer, committed batches until another
abort marker: a restarted worker stops receiving its own routed envelopes, a sink or
pager following a topic drops records.

**Busy fetches.** noida-db answers a fetch at once even when it has nothing to return,
ignoring ``fetch.max.wait.ms``/``fetch.min.bytes``, so an idle consumer sends thousands of
fetches a second and a worker burns most of a core on them. After an empty response the
consumer here waits :data:`EMPTY_FETCH_BACKOFF_S` before fetching from that broker again
(Apache Kafka does that wait itself, up to ``fetch.max.wait.ms``).

The stale-abort fix drops an entry whose ``first_offset`` is before the fetch offset, unless the
fetch continues a response that ended while that producer's aborted transaction was
still being skipped (remembered per topic-partition and offset: a property of the log,
so it holds whichever consumer in the process read it). It is correct for every
consumer that reads a partition from before its aborted transactions, which is how a
``read_committed`` consumer advances; it is installed only when
``kafka.broker: noida-db`` (set automatically for the embedded broker).

The aiokafka internals patched and read here are in the start-up check of
:mod:`spendwatch.streams.faust_internals`, which :func:`apply` runs first, so an aiokafka upgrade
that moves one stops the worker, sink or pager with its name.

>>> apply("noida-db"); apply("noida-db")  # idempotent
>>> from aiokafka.consumer.fetcher import Fetcher, PartitionRecords
>>> PartitionRecords._spendwatch_stale_abort_filter, Fetcher._spendwatch_empty_fetch_backoff
(True, True)
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from typing import Any

log = logging.getLogger(__name__)

#: (topic, partition, next offset) -> producer ids whose aborted transaction was still open there
_OPEN_ABORTED: OrderedDict[tuple[str, int, int], frozenset[int]] = OrderedDict()
_OPEN_ABORTED_LIMIT = 10_000


def install_stale_abort_filter() -> None:
    """Patch aiokafka's ``PartitionRecords`` (process-wide, once) to ignore stale aborted transactions."""
    from aiokafka.consumer.fetcher import PartitionRecords

    if getattr(PartitionRecords, "_spendwatch_stale_abort_filter", False):
        return
    original_init = PartitionRecords.__init__
    original_unpack = PartitionRecords._unpack_records

    @functools.wraps(original_init)
    def __init__(self: Any, tp: Any, records: Any, aborted_transactions: Any, fetch_offset: int,
                 *args: Any, **kwargs: Any) -> None:
        if aborted_transactions:
            continuing = _OPEN_ABORTED.get((tp.topic, tp.partition, fetch_offset), frozenset())
            aborted_transactions = [
                (producer_id, first_offset) for producer_id, first_offset in aborted_transactions
                if first_offset >= fetch_offset or producer_id in continuing
            ]
        original_init(self, tp, records, aborted_transactions, fetch_offset, *args, **kwargs)

    @functools.wraps(original_unpack)
    def _unpack_records(self: Any) -> Any:
        yield from original_unpack(self)
        if self._aborted_producers:
            _OPEN_ABORTED[(self._tp.topic, self._tp.partition, self.next_fetch_offset)] = frozenset(
                self._aborted_producers)
            while len(_OPEN_ABORTED) > _OPEN_ABORTED_LIMIT:
                _OPEN_ABORTED.popitem(last=False)

    PartitionRecords.__init__ = __init__  # type: ignore[method-assign]
    PartitionRecords._unpack_records = _unpack_records  # type: ignore[method-assign]
    PartitionRecords._spendwatch_stale_abort_filter = True  # type: ignore[attr-defined]
    log.info("noida-db workaround on: aborted transactions before the fetch offset are ignored")


#: Wait after an empty fetch response: bounds the added latency, cuts an idle consumer's fetches ~50x.
EMPTY_FETCH_BACKOFF_S = 0.01


def install_empty_fetch_backoff() -> None:
    """Patch aiokafka's ``Fetcher`` (process-wide, once) to pause briefly after a fetch that returned nothing."""
    import asyncio

    from aiokafka.consumer.fetcher import Fetcher

    if getattr(Fetcher, "_spendwatch_empty_fetch_backoff", False):
        return
    original = Fetcher._proc_fetch_request

    @functools.wraps(original)
    async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> bool:
        needs_wakeup = await original(self, assignment, node_id, request)
        if not needs_wakeup:  # nothing new was buffered: the broker answered an empty fetch at once
            try:
                await asyncio.sleep(EMPTY_FETCH_BACKOFF_S)
            except asyncio.CancelledError:  # close() or an unassigned partition, as aiokafka treats it
                return False
        return needs_wakeup

    Fetcher._proc_fetch_request = _proc_fetch_request  # type: ignore[method-assign]
    Fetcher._spendwatch_empty_fetch_backoff = True  # type: ignore[attr-defined]


def install_dead_leader_eviction() -> None:
    """Patch aiokafka's group coordinator (process-wide, once) to evict a group leader that never syncs.

    A follower whose SyncGroup waited most of a session timeout and then failed with
    REBALANCE_IN_PROGRESS, in a generation whose leader is another member, sends LeaveGroup
    on that leader's behalf: the leader was silent the whole time (a killed process), and
    noida-db would otherwise name it leader of every later generation too.
    """
    import time

    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.errors import RebalanceInProgressError, for_code
    from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest

    if getattr(GroupCoordinator, "_spendwatch_dead_leader_eviction", False):
        return
    original = GroupCoordinator._send_req

    @functools.wraps(original)
    async def _send_req(self: Any, request: Any) -> Any:
        started = time.monotonic()
        response = await original(self, request)
        if isinstance(request, JoinGroupRequest) and response.error_code == 0:
            self._spendwatch_leader = response.leader_id
        elif (isinstance(request, SyncGroupRequest) and not request._group_assignment
              and for_code(response.error_code) is RebalanceInProgressError):
            leader = getattr(self, "_spendwatch_leader", None)
            waited = time.monotonic() - started
            if leader and leader != self.member_id and waited >= self._session_timeout_ms / 2000:
                log.warning("group %s: leader %s sent no assignment for %.0f s (a dead member noida-db keeps "
                            "electing): evicting it", self.group_id, leader, waited)
                await original(self, LeaveGroupRequest(self.group_id, leader))
                self._spendwatch_leader = None
        return response

    GroupCoordinator._send_req = _send_req  # type: ignore[method-assign]
    GroupCoordinator._spendwatch_dead_leader_eviction = True  # type: ignore[attr-defined]


def apply(broker: str) -> None:
    """Install the workarounds the configured broker needs (none for Apache Kafka).

    The aiokafka internals they patch are checked first (whichever process applies them: worker,
    sink or pager), so an aiokafka upgrade that moved one stops the process with its name instead
    of patching the wrong thing.
    """
    if broker == "noida-db":
        from spendwatch.streams import faust_internals

        faust_internals.check()
        install_stale_abort_filter()
        install_empty_fetch_backoff()
        install_dead_leader_eviction()
