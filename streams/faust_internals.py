"""Every use of Faust's and aiokafka's private internals, in one place, checked at worker start.

The rest of :mod:`spendwatch.streams` uses only what this module exports and the public APIs
of faust-streaming and aiokafka. What is touched here, and why:

===========================================  =====================================================================
touch                                        what for
===========================================  =====================================================================
``App._new_transport``                       the app's consumer is :class:`FastDrainConsumer` (:class:`HookedApp`)
``App._on_partitions_revoked``               the processor commits its hot state before a revoke and forgets it
                                             after (:class:`HookedApp`)
``Consumer._drain_messages`` and what it     whole fetches handed to a batch handler, no per-message tasks
reads (``_read_offset``, ``_add_gap``,       (:class:`FastDrainConsumer`, a copy of Faust's loop)
``_n_acked``, ``_commit_every``,
``_stopped``, fetcher ``_stopped``)
``Consumer.commit / resume_partitions /      replaced on the live consumer: the commit flushes state first, stream
perform_seek`` (public, but swapped)         partitions resume only after the seek (:func:`hook_consumer`)
``Consumer._committed_offset``               which partitions a commit advanced (:func:`committed_offsets`)
``Consumer._read_offset``                    consumer lag for the metrics (:func:`read_offset`)
``Store._db_for_partition``, ``_key_index``  write committed state into RocksDB after the commit (:func:`store_put`)
``Store.offset_key``, ``partition_path``     read the persisted changelog offset at start-up (local_state.py)
``Producer._transaction_producers``,         produce whole record batches in a partition's transaction
``_trn_locks``, ``_ensure_producer``         (:func:`aiokafka_producer`, :func:`transaction_lock`)
``AIOKafkaProducer._partitioner``,           the partition of a keyed record in a batch send (:func:`producer_partitioner`,
``AIOKafkaClient._wait_on_metadata``         :func:`wait_on_metadata`)
``AIOKafkaConsumer._client``                 fresh topic metadata (:func:`force_metadata_update`)
``PartitionRecords.__init__``,               noida-db: stale aborted transactions ignored
``_unpack_records``,                         (:mod:`spendwatch.broker_quirks`, which passes
``_aborted_producers``, ``_tp``,             ``tp, records, aborted_transactions,
``next_fetch_offset``                        fetch_offset`` in that order)
``Fetcher._proc_fetch_request``              noida-db: a pause after an empty fetch (broker_quirks)
``GroupCoordinator._send_req``,              noida-db: a group leader that never syncs is evicted
``_session_timeout_ms``, ``member_id``,      (broker_quirks)
``group_id``,
``SyncGroupRequest._group_assignment``
===========================================  =====================================================================

These were written against faust-streaming 0.15 and aiokafka 0.14 (:data:`SUPPORTED`).
:func:`check` verifies the installed versions, that every attribute above exists and that the
methods broker_quirks wraps take the parameters it passes (:data:`PARAMETERS`); the
worker calls it before it starts (:func:`spendwatch.streams.worker.run_worker`), so an
upgrade that moves one of them stops the worker with the name of what is missing instead
of losing records in a rebalance.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import faust
from faust.exceptions import ProducerSendError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

#: Distribution -> the major.minor versions this module was written and tested against.
SUPPORTED: dict[str, tuple[str, ...]] = {"faust-streaming": ("0.15",), "aiokafka": ("0.14",)}

#: Messages handed over between two yields to the event loop (Faust's own value).
YIELD_EVERY = 100

BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]


class FaustInternalsError(RuntimeError):
    """The installed Faust or aiokafka lacks something this module relies on."""


# -- the start-up check -------------------------------------------------------------------------


def _rocksdb_store() -> type:
    from faust.stores.rocksdb import Store

    return Store


def _aiokafka_classes() -> tuple[type, type, type]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.client import AIOKafkaClient

    return AIOKafkaConsumer, AIOKafkaProducer, AIOKafkaClient


def _fetcher() -> type:
    from faust.transport.consumer import Fetcher

    return Fetcher


#: (class, attribute) pairs relied on; classes are given as callables so that importing this module stays cheap.
REQUIRED: tuple[tuple[Callable[[], type], tuple[str, ...]], ...] = (
    (lambda: faust.App, ("_new_transport", "_on_partitions_revoked", "consumer_generation_id", "rebalancing",
                         "in_transaction", "assignor", "crash")),
    (lambda: faust_aiokafka.Consumer, ("_drain_messages", "_read_offset", "_committed_offset", "_add_gap",
                                       "_n_acked", "_commit_every", "_stopped", "commit", "resume_partitions",
                                       "perform_seek", "track_message", "getmany", "suspend_flow", "wait_first",
                                       "consumer_stopped_errors", "highwater", "assignment")),
    (_fetcher, ("_stopped",)),
    (lambda: faust_aiokafka.Transport, ("Consumer",)),
    (lambda: faust_aiokafka.Producer, ("_transaction_producers", "_trn_locks", "_ensure_producer")),
    (lambda: _aiokafka_classes()[0], ("_client",)),
    (lambda: _aiokafka_classes()[1], ("_partitioner", "create_batch", "send_batch", "send", "client")),
    (lambda: _aiokafka_classes()[2], ("_wait_on_metadata", "force_metadata_update", "cluster")),
    (_rocksdb_store, ("_db_for_partition", "_key_index", "offset_key", "partition_path", "set_persisted_offset")),
    # spendwatch.broker_quirks (noida-db only, but an upgrade that moves them must stop the worker all the same)
    (lambda: _broker_quirks_classes()[0], ("__init__", "_unpack_records", "_aborted_producers", "_tp",
                                           "next_fetch_offset")),
    (lambda: _broker_quirks_classes()[1], ("_proc_fetch_request",)),
    (lambda: _broker_quirks_classes()[2], ("_send_req", "_session_timeout_ms", "member_id", "group_id")),
    (lambda: _broker_quirks_classes()[3], ("_group_assignment",)),
)


def _broker_quirks_classes() -> tuple[type, type, type, type, type]:
    from aiokafka.consumer.fetcher import Fetcher, PartitionRecords
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.protocol.group import LeaveGroupRequest, SyncGroupRequest

    return PartitionRecords, Fetcher, GroupCoordinator, SyncGroupRequest, LeaveGroupRequest


#: (class, method, its leading parameters after ``self``): the wrappers in broker_quirks pass these positionally.
PARAMETERS: tuple[tuple[Callable[[], type], str, tuple[str, ...]], ...] = (
    (lambda: _broker_quirks_classes()[0], "__init__", ("tp", "records", "aborted_transactions", "fetch_offset")),
    (lambda: _broker_quirks_classes()[1], "_proc_fetch_request", ("assignment", "node_id", "request")),
    (lambda: _broker_quirks_classes()[2], "_send_req", ("request",)),
    (lambda: _broker_quirks_classes()[4], "__init__", ("group", "member_id")),
)


def _declares(cls: type, attr: str) -> bool:
    """Whether ``cls`` has ``attr``: on the class, or assigned in an ``__init__`` of its MRO (instance attributes)."""
    if hasattr(cls, attr):
        return True
    pattern = re.compile(rf"self\.{re.escape(attr)}\s*(?::[^=\n]*)?=(?!=)")
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        init = inspect.unwrap(init)  # broker_quirks wraps PartitionRecords.__init__ (functools.wraps)
        try:
            source = inspect.getsource(init)
        except (OSError, TypeError):
            continue
        if pattern.search(source):
            return True
    return False


def missing() -> list[str]:
    """What :func:`check` would complain about: unsupported versions and missing attributes, one line each."""
    problems = []
    for dist, majors in SUPPORTED.items():
        try:
            installed = version(dist)
        except PackageNotFoundError:
            problems.append(f"{dist} is not installed")
            continue
        if ".".join(installed.split(".")[:2]) not in majors:
            problems.append(f"{dist} {installed} is installed; spendwatch's stream worker supports "
                            f"{' or '.join(m + '.x' for m in majors)}")
    for owner, attrs in REQUIRED:
        try:
            cls = owner()
        except ImportError as exc:
            problems.append(f"cannot import a class the worker relies on: {exc}")
            continue
        problems += [f"{cls.__module__}.{cls.__qualname__}.{attr} is missing" for attr in attrs
                     if not _declares(cls, attr)]
    for owner, method, expected in PARAMETERS:
        try:
            cls = owner()
            function = getattr(cls, method)
        except (ImportError, AttributeError):
            continue  # named above
        try:
            params = list(inspect.signature(function).parameters)[1:]
        except (TypeError, ValueError):
            params = []
        if tuple(params[:len(expected)]) != expected:
            problems.append(f"{cls.__module__}.{cls.__qualname__}.{method} takes ({', '.join(params)}); "
                            f"spendwatch.broker_quirks passes ({', '.join(expected)}) first")
    return problems


@cache
def check() -> None:
    """Raise :class:`FaustInternalsError` naming every unsupported version and missing attribute.

    Called once when a worker starts; the result is cached (it reads source files).
    """
    problems = missing()
    if problems:
        raise FaustInternalsError(
            "the installed Faust/aiokafka do not have what spendwatch.streams.faust_internals relies on:\n  "
            + "\n  ".join(problems)
            + "\ninstall the versions pinned in constraints.txt (pip install -c constraints.txt ...)")


# -- the app -----------------------------------------------------------------------------------


class HookedApp(faust.App):
    """A Faust app whose consumer is :class:`FastDrainConsumer` and whose revokes call ``revoke_hooks``.

    ``revoke_hooks`` (an object with ``before_revoke(revoked)`` coroutine and ``after_revoke(revoked)``)
    is set by whoever wires the app (the stream processor); None: Faust's revoke alone.
    """

    revoke_hooks: Any = None

    def _new_transport(self) -> Any:
        return FastDrainTransport(self.conf.broker_consumer, self)

    async def _on_partitions_revoked(self, revoked: set) -> None:  # type: ignore[override]
        hooks = self.revoke_hooks
        if hooks is not None:
            await hooks.before_revoke(revoked)
        await super()._on_partitions_revoked(revoked)
        if hooks is not None:
            hooks.after_revoke(revoked)


# -- the consumer ------------------------------------------------------------------------------


class FastDrainConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with cheaper hand-offs: whole fetches for batch topics, direct awaits for the rest.

    Faust's fetch loop hands every message to the agents one at a time through
    ``Service.wait_first(callback, suspend_flow)`` (four tasks and an ``asyncio.wait`` per
    message), then through the conductor, an agent queue and the stream iterator. For a
    topic whose handler takes batches anyway that costs more than the handler's own work
    and caps a worker at a few thousand messages a second. This consumer

    * hands the messages of a **batch topic** (:meth:`handle_in_batches`) to its handler
      once per fetch, as a list of Faust messages, tracked like any other so that offsets
      commit only once the handler acknowledges them (``consumer.ack``);
    * awaits the conductor directly for every other topic while the flow runs, and falls
      back to Faust's ``wait_first`` while a rebalance suspends it.

    Rebalances. A fetch read before a rebalance suspended the flow is not handed over (its
    partitions are sought back to their committed offsets when the rebalance ends, as Faust
    does with the messages it abandons); a handler already running is not interrupted (it is
    shielded from the fetcher's cancellation, and the commit before the revoke waits for
    it). A message handed to an agent after a rebalance is recognised by its consumer
    generation and dropped there (the stages' currency test,
    :meth:`spendwatch.streams.commit_protocol.CommitProtocol.currency`). Read offsets and gap tracking are
    Faust's, unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_handlers: dict[str, BatchHandler] = {}

    def handle_in_batches(self, topic: str, handler: BatchHandler) -> None:
        """Hand ``topic``'s messages to ``handler`` a fetch at a time instead of to Faust's agents.

        The topic must be subscribed (``app.topics.add(topic)``); the handler acknowledges each
        message with ``consumer.ack(message)`` once its effect is in the next commit.
        """
        self._batch_handlers[topic] = handler

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by every worker test
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        flow_suspended = self.suspend_flow.is_set
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        batch_handlers = self._batch_handlers
        track = self.track_message
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                messages = getmany(timeout=1.0)
                await asyncio.sleep(0)
                if self.should_stop:
                    continue
                batches: dict[str, list[Message]] = {}
                async for tp, message in messages:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    last_read = read_offsets[tp]
                    if last_read is not None and offset < last_read:
                        continue  # read before (Faust drops these too)
                    if offset - (last_read or 0) > 1 and last_read and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last_read + 1, offset)  # offsets without a message: transaction markers
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if message.topic in batch_handlers:
                        track(message)
                        batches.setdefault(message.topic, []).append(message)
                    elif flow_suspended():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        await callback(message)
                    read_offsets[tp] = offset
                for topic, batch in batches.items():
                    if not flow_suspended():  # else: re-read from the committed offsets once the rebalance ends
                        await asyncio.shield(asyncio.ensure_future(batch_handlers[topic](batch)))
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class FastDrainTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport, creating :class:`FastDrainConsumer`."""

    Consumer = FastDrainConsumer


@dataclass(slots=True)
class ConsumerOriginals:
    """The consumer's own methods, replaced by :func:`hook_consumer`."""

    commit: Callable[..., Awaitable[bool]]
    resume_partitions: Callable[[Iterable[TP]], None]
    perform_seek: Callable[[], Awaitable[None]]


def hook_consumer(consumer: Any, *, commit: Callable[..., Awaitable[bool]],
                  resume_partitions: Callable[[Iterable[TP]], None],
                  perform_seek: Callable[[], Awaitable[None]]) -> ConsumerOriginals:
    """Replace the live consumer's ``commit``, ``resume_partitions`` and ``perform_seek``; returns the originals.

    Faust calls these itself (its periodic commit, its recovery's resume and seek), so wrapping
    them on the instance is the only way in.
    """
    originals = ConsumerOriginals(consumer.commit, consumer.resume_partitions, consumer.perform_seek)
    consumer.commit = commit
    consumer.resume_partitions = resume_partitions
    consumer.perform_seek = perform_seek
    return originals


def committed_offsets(consumer: Any) -> dict[TP, int | None]:
    """A copy of the offsets the consumer last committed, per partition."""
    return dict(consumer._committed_offset)


def read_offset(consumer: Any, tp: TP) -> int | None:
    """The offset of the last message the consumer read from ``tp`` (None: none yet)."""
    return consumer._read_offset.get(tp)


# -- the table store ---------------------------------------------------------------------------


def store_put(store: Any, partition: int, key: bytes, value: bytes) -> None:
    """Write ``key`` into the table store's ``partition`` (RocksDB keeps one database per partition)."""
    db_for_partition = getattr(store, "_db_for_partition", None)
    if db_for_partition is not None:
        db_for_partition(partition).put(key, value)
        store._key_index[key] = partition
    else:  # the memory store
        store.data[key] = value


# -- the producer ------------------------------------------------------------------------------


def aiokafka_producer(producer: Any, transactional_id: str | None) -> Any:
    """The aiokafka producer under Faust's ``producer``: the one of ``transactional_id``'s transaction if given."""
    if transactional_id is None:
        return producer._ensure_producer()
    aio = producer._transaction_producers.get(transactional_id)
    if aio is None:
        raise ProducerSendError(f"No transaction producer found for : {transactional_id}")
    return aio


def transaction_lock(producer: Any, transactional_id: str | None) -> contextlib.AbstractAsyncContextManager[Any]:
    """The lock Faust holds while it commits ``transactional_id``'s transaction (a no-op without one)."""
    return producer._trn_locks[transactional_id] if transactional_id else contextlib.nullcontext()


def producer_partitioner(aio: Any) -> Callable[[bytes | None, list[int], list[int]], int]:
    """The aiokafka producer's partitioner: ``(key, all partitions, available partitions) -> partition``."""
    return aio._partitioner


async def wait_on_metadata(aio: Any, topic: str) -> Any:
    """Wait until the aiokafka producer's client knows ``topic``'s partitions; returns its cluster metadata."""
    await aio.client._wait_on_metadata(topic)
    return aio.client.cluster


async def force_metadata_update(consumer: Any) -> None:
    """Refresh a started ``AIOKafkaConsumer``'s cluster metadata (``partitions_for_topic`` reads it)."""
    await consumer._client.force_metadata_update()

