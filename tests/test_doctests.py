"""Runs the numpydoc examples of every spendwatch.detectors, .streams and .benchmarks module as doctests.

(``pytest --doctest-modules`` does not work with the folder mapping of setup.py.)
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import spendwatch.benchmarks
import spendwatch.detectors
import spendwatch.streams
import spendwatch.streams.ingest

MODULES = sorted(m.name for package in (spendwatch.detectors, spendwatch.streams, spendwatch.streams.ingest,
                                        spendwatch.benchmarks)
                 for m in pkgutil.iter_modules(package.__path__, f"{package.__name__}.")) + [
    "spendwatch.broker_quirks", "spendwatch.kafka_security", "spendwatch.gc_tuning", "spendwatch.schemas.model_names",
    "spendwatch.sinks.paging.notification"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_every_detector_module_has_examples():
    for name in ("spend_spike", "burn_rate", "session_burn", "budget_pace", "engine", "episodes", "baseline",
                 "model_mix_drift", "cache_hit_drop", "context_bloat", "evidence", "session_spans"):
        module = importlib.import_module(f"spendwatch.detectors.{name}")
        assert doctest.DocTestFinder().find(module) and any(
            t.examples for t in doctest.DocTestFinder().find(module)), name
