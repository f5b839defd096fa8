"""The start-up check of the Faust/aiokafka internals the stream worker relies on (no broker)."""

from __future__ import annotations

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from spendwatch.streams import faust_internals


@pytest.fixture(autouse=True)
def _uncached():
    faust_internals.check.cache_clear()
    yield
    faust_internals.check.cache_clear()


def test_the_pinned_versions_have_everything() -> None:
    assert faust_internals.missing() == []
    faust_internals.check()


def test_instance_attributes_are_found_without_an_instance() -> None:
    # set in __init__ only: found in its source, not on the class
    assert not hasattr(faust_aiokafka.Consumer, "_committed_offset")
    assert faust_internals._declares(faust_aiokafka.Consumer, "_committed_offset")
    assert not faust_internals._declares(faust_aiokafka.Consumer, "_no_such_attribute")


def test_a_missing_method_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.transport.consumer import Consumer

    monkeypatch.delattr(Consumer, "_drain_messages")  # where Faust defines it
    with pytest.raises(faust_internals.FaustInternalsError, match=r"Consumer\._drain_messages is missing"):
        faust_internals.check()


def test_a_missing_class_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(faust_aiokafka.Producer, "_trn_locks")
    monkeypatch.delattr(faust.App, "_new_transport")
    problems = faust_internals.missing()
    assert any(p.endswith("Producer._trn_locks is missing") for p in problems)
    assert any(p.endswith("App._new_transport is missing") for p in problems)


def test_an_attribute_set_only_in_init_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_internals, "REQUIRED", ((lambda: faust_aiokafka.Consumer, ("_read_offset",)),))
    assert faust_internals.missing() == []
    monkeypatch.setattr(faust_internals, "REQUIRED", ((lambda: faust_aiokafka.Consumer, ("_read_offsets",)),))
    assert faust_internals.missing() == ["faust.transport.drivers.aiokafka.Consumer._read_offsets is missing"]


def test_an_unsupported_version_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(faust_internals.SUPPORTED, "faust-streaming", ("0.99",))
    with pytest.raises(faust_internals.FaustInternalsError, match=r"faust-streaming 0\.15\.\d+ is installed.*0\.99\.x"):
        faust_internals.check()


def test_the_app_uses_the_fast_drain_consumer() -> None:
    app = faust_internals.HookedApp("faust-internals-test", broker="kafka://localhost:1")
    assert isinstance(app.transport, faust_internals.FastDrainTransport)
    assert app.transport.Consumer is faust_internals.FastDrainConsumer


@pytest.mark.parametrize(("module", "cls", "attr"), [
    ("aiokafka.consumer.fetcher", "PartitionRecords", "_unpack_records"),
    ("aiokafka.consumer.fetcher", "Fetcher", "_proc_fetch_request"),
    ("aiokafka.consumer.group_coordinator", "GroupCoordinator", "_send_req"),
])
def test_a_method_broker_quirks_patches_is_checked(monkeypatch: pytest.MonkeyPatch, module: str, cls: str,
                                                   attr: str) -> None:
    import importlib

    monkeypatch.delattr(getattr(importlib.import_module(module), cls), attr)
    with pytest.raises(faust_internals.FaustInternalsError, match=rf"{module}\.{cls}\.{attr} is missing"):
        faust_internals.check()


def test_an_instance_attribute_broker_quirks_reads_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka.consumer.fetcher import PartitionRecords

    assert faust_internals._declares(PartitionRecords, "_aborted_producers")
    original_init = PartitionRecords.__init__

    def renamed(self, tp, records, aborted_transactions, fetch_offset, *args):  # no _aborted_producers, _tp ...
        original_init(self, tp, records, aborted_transactions, fetch_offset, *args)

    monkeypatch.setattr(PartitionRecords, "__init__", renamed)
    problems = faust_internals.missing()
    assert "aiokafka.consumer.fetcher.PartitionRecords._aborted_producers is missing" in problems
    assert "aiokafka.consumer.fetcher.PartitionRecords.next_fetch_offset is missing" in problems


def test_a_reordered_signature_of_a_wrapped_method_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka.consumer.fetcher import PartitionRecords

    def reordered(self, tp, aborted_transactions, records, fetch_offset, *args):
        pass

    monkeypatch.setattr(PartitionRecords, "__init__", reordered)
    with pytest.raises(faust_internals.FaustInternalsError,
                       match=r"PartitionRecords\.__init__ takes \(tp, aborted_transactions, records, fetch_offset, "
                             r"args\); spendwatch\.broker_quirks passes \(tp, records, aborted_transactions, "
                             r"fetch_offset\) first"):
        faust_internals.check()


def test_the_noida_db_workarounds_check_what_they_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    # the sink and the pager apply the workarounds without the worker's start-up: apply() checks
    from aiokafka.consumer.fetcher import Fetcher

    from spendwatch import broker_quirks

    monkeypatch.delattr(Fetcher, "_proc_fetch_request")
    broker_quirks.apply("kafka")  # Apache Kafka: nothing patched, nothing to check
    with pytest.raises(faust_internals.FaustInternalsError, match=r"Fetcher\._proc_fetch_request is missing"):
        broker_quirks.apply("noida-db")
