"""The Observation wire format: how a record travels from the stream's parse stage to its detect stage.

The parse stage flattens each record once into the :class:`~spendwatch.detectors.base.Observation`
the detectors read (as the backtest does) and sends it to the partition of each state it updates
inside an **envelope**, one message of the internal ``routed`` topic. Envelopes sit in that topic
(and are replayed after a crash), so their bytes are a format, written and read only here:

* **format 2** (current): a JSON array ``[2, [state keys, row], [state keys, row], ...]``; a
  *row* is the observation's values in the order of :data:`ROW_FIELDS`, a list fixed by this
  module, not by the dataclass. A field added to :class:`Observation` is appended to
  :data:`ROW_FIELDS` (rows written before it are shorter and read with the field's default);
  the fields are never reordered. ``tests/test_observation_wire.py`` pins the bytes.
* **format 1** (read only): ``[[kind, state keys, canonical JSON], ...]`` with kind ``"e"``
  (request) or ``"o"`` (outcome), the records' canonical JSON (:func:`observe_canonical`).

>>> obs = Observation(kind="request", ts=1795463911.25, cost=1_234_567, model="o3", tags=("a", "b"))
>>> [(keys, again)] = decode_envelope(encode_envelope([(["key:k1"], encode_row(obs))]))
>>> keys, again == obs
(['key:k1'], True)
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson

from spendwatch.detectors.base import MICROS, Observation

if TYPE_CHECKING:
    from spendwatch.schemas.event import GatewayEvent

#: First element of a current envelope.
ENVELOPE_FORMAT = 2
#: The fields of a format-2 row, in order. Append new fields at the end; never reorder or remove one.
ROW_FIELDS: tuple[str, ...] = (
    "kind", "ts", "cost", "cost_known", "model", "provider", "session_id", "tags", "ok", "error_type",
    "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
    "outcome_kind", "outcome_value", "key_hash", "key_alias", "user", "team", "org", "record_id",
)
_FORMAT1_KINDS = {"e": "request", "o": "outcome"}

#: An observation's row (a tuple in :data:`ROW_FIELDS` order).
encode_row = operator.attrgetter(*ROW_FIELDS)

_DATACLASS_FIELDS = tuple(f.name for f in dataclasses.fields(Observation))
#: Rows build the dataclass positionally while its fields start with ROW_FIELDS in the same order (the
#: fast path); otherwise by name, which stays correct whatever order the dataclass declares.
POSITIONAL = _DATACLASS_FIELDS[:len(ROW_FIELDS)] == ROW_FIELDS


def _from_row_positional(row: Sequence[Any]) -> Observation:
    return Observation(*row)


def _from_row_by_name(row: Sequence[Any]) -> Observation:
    return Observation(**dict(zip(ROW_FIELDS, row, strict=False)))


#: The :class:`Observation` of a row made in this process (its ``tags`` already a tuple).
from_row = _from_row_positional if POSITIONAL else _from_row_by_name


def unknown_fields() -> list[str]:
    """Observation fields a row does not carry (they would reach the detect stage as their default)."""
    return [name for name in _DATACLASS_FIELDS if name not in ROW_FIELDS]


def decode_row(row: Sequence[Any]) -> Observation:
    """The :class:`Observation` of a row read from JSON (its ``tags`` a list)."""
    obs = from_row(row)
    obs.tags = tuple(obs.tags) if obs.tags else ()  # a JSON list; () as observe() makes it, not []
    return obs


def request_row(event: GatewayEvent) -> tuple[Any, ...]:
    """The row of a request's observation, made from the event without building the observation.

    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> from spendwatch.schemas.event import GatewayEvent
    >>> event = GatewayEvent(event_id="e1", event_time=datetime(2026, 11, 23, 9, tzinfo=UTC), gateway="litellm",
    ...                      api_key_hash="k1", user="ann", team="ml", org="acme", model="o3", provider="openai",
    ...                      session_id="s1", tags=("a",), status="failure", error_type="E", input_tokens=10,
    ...                      cache_read_tokens=4, cache_write_tokens=1, output_tokens=3, reasoning_tokens=2,
    ...                      cost_usd=Decimal("1.2345675"), api_key_alias="ci")
    >>> from_row(request_row(event)) == Observation(
    ...     kind="request", ts=event.event_time.timestamp(), cost=1_234_567, cost_known=True, model="o3",
    ...     provider="openai", session_id="s1", tags=("a",), ok=False, error_type="E", input_tokens=10,
    ...     cache_read_tokens=4, cache_write_tokens=1, output_tokens=3, reasoning_tokens=2, key_hash="k1",
    ...     key_alias="ci", user="ann", team="ml", org="acme", record_id="e1")
    True
    """
    cost = event.cost_usd
    return ("request", event.event_time.timestamp(), 0 if cost is None else int(cost * MICROS), cost is not None,
            event.model, event.provider, event.session_id, event.tags, event.status == "success",
            event.error_type, event.input_tokens, event.cache_read_tokens, event.cache_write_tokens,
            event.output_tokens, event.reasoning_tokens, None, 0.0, event.api_key_hash, event.api_key_alias,
            event.user, event.team, event.org, event.event_id)


def observe_canonical(kind: str, data: dict[str, Any]) -> Observation:
    """The observation of a record from its canonical JSON (format-1 envelopes).

    ``kind`` is ``"request"`` or ``"outcome"`` and ``data`` the parsed ``model_dump_json()``
    of a validated :class:`GatewayEvent` / :class:`OutcomeEvent` (every field present).

    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> from spendwatch.detectors.engine import observe
    >>> from spendwatch.schemas.event import GatewayEvent
    >>> event = GatewayEvent(event_id="e1", event_time=datetime(2026, 11, 23, 9, 30, 1, 250, tzinfo=UTC),
    ...                      gateway="litellm", api_key_hash="k1", model="o3", cost_usd=Decimal("1.2345675"),
    ...                      tags=("a", "b"), input_tokens=10, output_tokens=2)
    >>> observe_canonical("request", orjson.loads(event.model_dump_json())) == observe(event)
    True
    """
    ts = datetime.fromisoformat(data["event_time"]).timestamp()
    if kind == "outcome":
        return Observation(
            kind="outcome", ts=ts, cost_known=False, session_id=data["session_id"], outcome_kind=data["kind"],
            outcome_value=data["value"], key_hash=data["api_key_hash"], user=data["user"], team=data["team"],
            record_id=data["outcome_id"],
        )
    cost = data["cost_usd"]
    return Observation(
        kind="request", ts=ts, cost=0 if cost is None else int(Decimal(cost) * MICROS), cost_known=cost is not None,
        model=data["model"], provider=data["provider"], session_id=data["session_id"], tags=tuple(data["tags"]),
        ok=data["status"] == "success", error_type=data["error_type"],
        input_tokens=data["input_tokens"], cache_read_tokens=data["cache_read_tokens"],
        cache_write_tokens=data["cache_write_tokens"], output_tokens=data["output_tokens"],
        reasoning_tokens=data["reasoning_tokens"], key_hash=data["api_key_hash"], key_alias=data["api_key_alias"],
        user=data["user"], team=data["team"], org=data["org"], record_id=data["event_id"],
    )


def encode_envelope(entries: Iterable[tuple[list[str], Sequence[Any]]]) -> bytes:
    """A format-2 envelope of ``(state keys, row)`` entries."""
    return orjson.dumps([ENVELOPE_FORMAT, *entries])


def decode_envelope(value: bytes) -> list[tuple[list[str], Observation]]:
    """The ``(state keys, observation)`` entries of an envelope of either format."""
    entries = orjson.loads(value)
    if entries and entries[0] == ENVELOPE_FORMAT:
        return [(keys, decode_row(row)) for keys, row in islice(entries, 1, None)]
    return [(keys, observe_canonical(_FORMAT1_KINDS[kind], data)) for kind, keys, data in entries]
