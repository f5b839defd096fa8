"""The pipeline's plain functions: parse a batch of raw messages, route records to detector states.

Nothing here touches Kafka or Faust; the agents in :mod:`spendwatch.streams.agents` call
these and send what they return. A message that fails to parse becomes a
:class:`~spendwatch.schemas.dead_letter.DeadLetter`; it never stops the batch.

Re-keying: a record updates several detector states (``key:<hash>``, ``team:ml``...). The
parse stage groups a batch's records by the *partition of each state key* and sends one
**envelope** per partition to the internal ``routed`` topic, so every record of one state
key reaches the one worker that owns that state, and the detect stage pays Kafka's
per-message cost once per envelope instead of once per record.

>>> state_partition("key:k1", 8) == state_partition("key:k1", 8)
True
>>> 0 <= state_partition("team:ml", 8) < 8
True
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from spendwatch.detectors.engine import observe
from spendwatch.detectors.observation_wire import encode_envelope, encode_row, request_row
from spendwatch.schemas.adapters import parse_into
from spendwatch.schemas.dead_letter import DeadLetter
from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.event_window import within_window
from spendwatch.schemas.outcome import OutcomeEvent
from spendwatch.schemas.redact import redact_bytes
from spendwatch.streams.partitioner import key_partition

if TYPE_CHECKING:
    from spendwatch.schemas.adapters.config import AdaptersConfig
    from spendwatch.schemas.event_window import EventTimeConfig
    from spendwatch.streams.config import TopicsConfig

    Record = GatewayEvent | OutcomeEvent

#: Records per envelope on the routed topic (keeps each message well under Kafka's 1 MB default).
ENVELOPE_MAX_RECORDS = 500


@dataclass(slots=True, frozen=True)
class RawMessage:
    """One message from the raw topic, with where it came from (for dead letters)."""

    value: bytes | None
    topic: str
    partition: int
    offset: int


class SourceMessage(Protocol):
    """What :func:`parse_batch` reads of a message: a :class:`RawMessage` or a Faust message."""

    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class Output:
    """A message to produce: ``partition=None`` lets the producer hash ``key``."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass(slots=True)
class ParsedBatch:
    records: list[Record] = field(default_factory=list)
    #: The canonical JSON of each record, in the same order (for the events and outcomes topics).
    record_json: list[bytes] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def parse_batch(messages: Iterable[SourceMessage], adapters: AdaptersConfig, *, stage: str = "parse",
                now: float | None = None, fast_path: bool = True) -> ParsedBatch:
    """Parse every message; bad ones become dead letters naming their source offset.

    ``messages`` are :class:`RawMessage` or anything with the same attributes (a Faust message).
    An unexpected exception from an adapter is a dead letter too (``error_type="internal"``),
    so one odd message can never stop a worker. Records dated outside ``adapters.event_time``
    around ``now`` (default: the wall clock) are dead letters (``out_of_range``), the others of
    their message are kept.

    The usual message, one canonical event with its cost and dated inside the window, takes a
    loop with the per-batch work hoisted out (window bounds once, pydantic's validator called
    directly); any other message, or one that fails there, goes through :func:`parse_message_into`,
    which alone decides its records and dead letters. ``fast_path=False`` sends every message
    there (the reference the parse benchmark and the equivalence test compare with).
    """
    out = ParsedBatch()
    window = adapters.event_time
    now = time.time() if now is None else now
    if not fast_path:
        for msg in messages:
            parse_message_into(out, msg, adapters, window, now, stage)
        return out
    oldest, latest = window.bounds(now) if window.enforce else (-math.inf, math.inf)
    max_bytes = adapters.max_message_bytes
    records, record_json = out.records, out.record_json
    validate, to_json = _validate_event_json, _event_to_json
    for msg in messages:
        raw = msg.value
        if type(raw) is bytes and len(raw) <= max_bytes and b'"event_id"' in raw and b'"cost_usd"' in raw:
            try:
                event = validate(raw)
            except Exception:  # noqa: BLE001 - the per-message path below names the error
                event = None
            # a "provider/model" name and an out-of-window time take the per-message path, which handles them
            if event is not None and "/" not in event.model and oldest <= event.event_time.timestamp() <= latest:
                records.append(event)
                record_json.append(to_json(event))
                continue
        parse_message_into(out, msg, adapters, window, now, stage)
    return out


_validate_event_json = GatewayEvent.__pydantic_validator__.validate_json  # = GatewayEvent.model_validate_json
_event_to_json = GatewayEvent.__pydantic_serializer__.to_json  # = model_dump_json(), as bytes
_TO_JSON = {GatewayEvent: _event_to_json, OutcomeEvent: OutcomeEvent.__pydantic_serializer__.to_json}


def parse_message_into(out: ParsedBatch, msg: SourceMessage, adapters: AdaptersConfig, window: EventTimeConfig,
                       now: float, stage: str) -> None:
    """Parse one message into ``out``: its records (in order) and its dead letters."""
    raw = msg.value
    errors: list[ParseError] = []
    try:
        if raw is None:
            raise ParseError("invalid_json", "empty message (null value)")
        parsed = within_window(parse_into(raw, adapters, errors), window, now, errors)
    except ParseError as err:
        parsed = []
        errors.append(err)
    except Exception as exc:  # noqa: BLE001 - an adapter bug must not crash the worker
        out.dead_letters.append(DeadLetter.for_bytes(
            redact_bytes(raw or b"")[0], reason=f"{type(exc).__name__}: {exc}"[:1000], error_type="internal",
            **_source(msg, stage)))
        return
    if errors:
        source = _source(msg, stage)
        out.dead_letters.extend(err.to_dead_letter(raw or b"", **source) for err in errors)
    for record in parsed:
        out.records.append(record)
        out.record_json.append(_TO_JSON[type(record)](record))


def _source(msg: SourceMessage, stage: str) -> dict[str, Any]:
    return {"source_topic": msg.topic, "source_partition": msg.partition, "source_offset": msg.offset, "stage": stage}


def scope_key(record: Record) -> bytes | None:
    """The Kafka key of canonical events/outcomes: the key scope (API key hash, else ``user:<name>``)."""
    value = record.scope_value("key")
    return value.encode() if value else None


def canonical_outputs(batch: ParsedBatch, topics: TopicsConfig) -> list[Output]:
    """Canonical records for the ``events`` and ``outcomes`` topics (the ClickHouse sink reads these)."""
    outputs = []
    for record, data in zip(batch.records, batch.record_json, strict=True):
        topic = topics.outcomes if isinstance(record, OutcomeEvent) else topics.events
        outputs.append(Output(topic, scope_key(record), data))
    return outputs


def dead_letter_outputs(dead_letters: Iterable[DeadLetter], topics: TopicsConfig) -> list[Output]:
    """Dead letters for the ``dead_letters`` topic, keyed by source ``topic:partition:offset``."""
    return [
        Output(topics.dead_letters, f"{dl.source_topic}:{dl.source_partition}:{dl.source_offset}".encode(),
               dl.model_dump_json().encode())
        for dl in dead_letters
    ]


def state_partition(state_key: str, partitions: int) -> int:
    """The partition owning a state key: Kafka's default partitioner (murmur2, its hash cached) on the key."""
    return key_partition(state_key.encode(), partitions)


def route_records(batch: ParsedBatch, routes: Callable[[Record], list[str]], partitions: int) -> dict[int, list[Any]]:
    """Group a batch's records by the partition of each state key they update.

    Returns ``{partition: [[state keys in that partition], observation row], ...]}``; a record
    with no state key (no detector wants it) goes nowhere.
    """
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for record in batch.records:
        keys = routes(record)
        if not keys:
            continue
        row = request_row(record) if type(record) is GatewayEvent else encode_row(observe(record))
        if len(keys) == 1:
            by_partition[state_partition(keys[0], partitions)].append((keys, row))
            continue
        grouped: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            grouped[state_partition(key, partitions)].append(key)
        for partition, part_keys in grouped.items():
            by_partition[partition].append((part_keys, row))
    return by_partition


def envelope_outputs(routed: dict[int, list[Any]], topic: str) -> list[Output]:
    """Envelopes for the routed topic: at most :data:`ENVELOPE_MAX_RECORDS` records each.

    The format (state keys and each record's observation as a row) is
    :mod:`spendwatch.detectors.observation_wire`'s, which also decodes them.
    """
    outputs = []
    for partition, entries in sorted(routed.items()):
        for start in range(0, len(entries), ENVELOPE_MAX_RECORDS):
            outputs.append(Output(topic, None, encode_envelope(entries[start:start + ENVELOPE_MAX_RECORDS]), partition))
    return outputs
