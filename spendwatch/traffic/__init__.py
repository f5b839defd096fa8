"""Synthetic LLM gateway traffic with labelled incidents: the team's test, benchmark and demo data.

A deterministic (by seed) organisation -- two orgs, several teams in three time zones,
dozens of API keys with aliases and users, each with a habit (coding agents running long
sessions with prompt caching, chat users, batch services, sparse scripts) -- sends calls
through an imaginary LiteLLM gateway. Calls are priced exactly with genai-prices
(:func:`spendwatch.schemas.pricing.compute_cost`) and follow hour-of-day and
weekday/weekend seasonality, with occasional failures and retries, keys that appear
mid-run, and accepted-task / merged-PR outcome events. On top, every incident kind the
detectors must page for is injected on its own key (or team) with its ground truth, and
the ordinary-life cases that must *not* page are labelled too
(:mod:`spendwatch.traffic.incidents`).

Python API
----------
``generate(days, seed, start, incidents, keys, teams)``
    :class:`~spendwatch.schemas.event.GatewayEvent` and
    :class:`~spendwatch.schemas.outcome.OutcomeEvent` records in event-time order.
``ground_truth(...)`` (same arguments)
    list of :class:`~spendwatch.traffic.incidents.GroundTruth`: kind, subject, start, end,
    the detector that must page and the time-to-detect bound; ``negative=True`` for the
    scenarios that must stay quiet.
``iter_json_lines(...)``
    canonical JSON bytes (no trailing newline) per record without building pydantic models:
    the fast path for bulk producing (benchmarks, ``spendwatch generate``).
``Traffic(...)``
    the organisation itself (``.keys``, ``.scenarios``, ``.records()``) for custom rendering.

>>> from spendwatch.traffic import generate, ground_truth
>>> events = list(generate(days=1, seed=3, keys=20, teams=3, incidents="none"))
>>> len(events) > 1000, all(a.event_time <= b.event_time for a, b in zip(events, events[1:]))
(True, True)
>>> sorted({t.kind for t in ground_truth(days=7, seed=3, keys=20, teams=3) if not t.negative})[:3]
['budget_overrun', 'cache_hit_drop', 'efficiency_decay']

``DEMO_CONFIG``
    path of ``demo_config.yaml``: the team budgets (``detectors.budget_pace``) matching the
    default parameters; ``spendwatch.traffic.budgets.suggested_config(Traffic(...))`` sizes
    them for any other parameters.

Command line: ``spendwatch generate --days 7 --seed 1 --output events.jsonl.gz --truth-out truth.json
[--config-out budgets.yaml]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from spendwatch.traffic.generator import DEFAULT_START, Outcome, Traffic, outcome_dict, request_dict, to_record
from spendwatch.traffic.incidents import INCIDENTS, NEGATIVES, GroundTruth

#: The detectors config (team budgets) matching the default ``generate()`` parameters.
DEMO_CONFIG = Path(__file__).with_name("demo_config.yaml")

__all__ = ["DEFAULT_START", "DEMO_CONFIG", "INCIDENTS", "NEGATIVES", "GroundTruth", "Traffic", "generate", "ground_truth",
           "iter_json_lines"]


def generate(days: float = 7, seed: int = 1, start: date | datetime | str | None = None, incidents: Any = "all",
             keys: int = 60, teams: int = 6) -> Iterator[Any]:
    """GatewayEvent and OutcomeEvent records, in event-time order (see the module docstring)."""
    traffic = Traffic(days, seed, start, incidents, keys, teams)
    for n, item in enumerate(traffic.records()):
        yield to_record(item, n, seed)


def ground_truth(days: float = 7, seed: int = 1, start: date | datetime | str | None = None, incidents: Any = "all",
                 keys: int = 60, teams: int = 6) -> list[GroundTruth]:
    """The labelled incidents and negative scenarios of the same arguments' traffic."""
    return Traffic(days, seed, start, incidents, keys, teams).ground_truth()


def iter_json_lines(days: float = 7, seed: int = 1, start: date | datetime | str | None = None,
                    incidents: Any = "all", keys: int = 60, teams: int = 6,
                    traffic: Traffic | None = None) -> Iterator[bytes]:
    """Canonical JSON bytes of every record (one object each, no newline), fastest path."""
    traffic = traffic or Traffic(days, seed, start, incidents, keys, teams)
    dumps = orjson.dumps
    for n, item in enumerate(traffic.records()):
        if isinstance(item, Outcome):
            yield dumps(outcome_dict(item, f"out-{traffic.seed}-{n}"))
        else:
            yield dumps(request_dict(item, f"evt-{traffic.seed}-{n}"))
