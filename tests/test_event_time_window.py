"""Event times far from now are dead-lettered on the live paths, and no gap in event time freezes a worker.

Issue 16, item 1: one event dated 9999-12-31 was accepted and blocked the worker for 769 s
while its clock stepped through every hour to that date.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from spendwatch.config import Settings
from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.engine import Engine
from spendwatch.schemas.event import GatewayEvent
from spendwatch.streams.detection import PartitionDetector
from spendwatch.detectors.observation_wire import decode_envelope
from spendwatch.streams.pipeline import RawMessage, envelope_outputs, parse_batch, route_records

from ingest_offline import offline_ingest, offline_settings
from streams_kit import event

NOW = datetime.now(UTC).replace(microsecond=0)
FAR_FUTURE = "9999-12-31T23:59:59Z"


def litellm(call_id: str, start: float) -> dict:
    return {
        "id": f"chatcmpl-{call_id}", "litellm_call_id": call_id, "call_type": "acompletion", "status": "success",
        "custom_llm_provider": "openai", "startTime": start, "endTime": start + 0.5, "model": "gpt-4o-mini",
        "response_cost": 0.0000135,
        "metadata": {"user_api_key_hash": "hash-lt", "usage_object": {"prompt_tokens": 10, "completion_tokens": 20}},
    }


def test_the_worker_parse_stage_dead_letters_far_dated_records_and_keeps_the_rest() -> None:
    year_2999 = datetime(2999, 1, 1, tzinfo=UTC).timestamp()
    bodies = [event(1, "k", NOW, "1"), {**event(2, "k", NOW, "1"), "event_time": FAR_FUTURE},
              litellm("lt-2999", year_2999), event(3, "k", datetime(1970, 1, 1, tzinfo=UTC), "1"),
              litellm("lt-now", NOW.timestamp() - 60), event(4, "k", NOW + timedelta(minutes=30), "1")]
    msgs = [RawMessage(orjson.dumps(b), "raw", 0, offset) for offset, b in enumerate(bodies)]
    parsed = parse_batch(msgs, Settings().adapters)
    assert sorted(r.event_id for r in parsed.records) == ["e1", "e4", "lt-now"]
    assert [(d.source_offset, d.error_type, d.field) for d in parsed.dead_letters] == [
        (1, "out_of_range", "event_time"), (2, "out_of_range", "event_time"), (3, "out_of_range", "event_time")]
    assert "9999-12-31T23:59:59Z is" in parsed.dead_letters[0].reason
    assert "after the receiving clock" in parsed.dead_letters[1].reason
    assert "max_age_days" in parsed.dead_letters[2].reason


def test_the_window_is_configurable_and_can_be_turned_off_for_replays() -> None:
    old = event(1, "k", NOW - timedelta(days=45), "1")
    msgs = [RawMessage(orjson.dumps(old), "raw", 0, 0)]
    assert len(parse_batch(msgs, Settings().adapters).records) == 1
    short = Settings.model_validate({"clickhouse": {"raw_retention_days": 30}})  # the age follows the retention
    assert short.adapters.event_time.max_age_days == 30
    assert [d.error_type for d in parse_batch(msgs, short.adapters).dead_letters] == ["out_of_range"]
    replay = Settings.model_validate({"clickhouse": {"raw_retention_days": 30},
                                      "adapters": {"event_time": {"enforce": False}}})
    assert len(parse_batch(msgs, replay.adapters).records) == 1


async def test_ingest_answers_400_and_dead_letters_a_far_future_event() -> None:
    async with offline_ingest() as ingest:
        status, body = await ingest.post(orjson.dumps({**event(1, "k", NOW, "1"), "event_time": FAR_FUTURE}))
        assert status == 400
        assert body["errors"][0]["error_type"] == "out_of_range"
        mixed = [event(2, "k", NOW, "1"), litellm("lt-2999", datetime(2999, 6, 1, tzinfo=UTC).timestamp())]
        status, body = await ingest.post(orjson.dumps(mixed))
        assert (status, body["accepted"], body["rejected"]) == (200, 1, 1)
        assert [e["event_id"] for e in ingest.events()] == ["e2"]
        letters = ingest.dead_letters()
        assert [(d.error_type, d.stage) for d in letters] == [("out_of_range", "ingest")] * 2
        assert "2999-06-01" in letters[1].reason


def _detector_after(first: datetime, second: datetime, *, hot: bool) -> PartitionDetector:
    """A partition detector fed three records at ``first``, then one dated ``second``."""
    engine = Engine(Settings().detectors)
    cost = "400" if hot else "0.01"  # $400 in one session trips session_burn: an active episode
    events = [event(i, "k", first + timedelta(seconds=i), cost, session="s") for i in range(3)]
    events.append(event(99, "k", second, "0.01"))
    msgs = [RawMessage(orjson.dumps(e), "raw", 0, i) for i, e in enumerate(events)]
    replay = Settings.model_validate({"adapters": {"event_time": {"enforce": False}}})
    outputs = envelope_outputs(route_records(parse_batch(msgs, replay.adapters), engine.routes, 1), "routed")
    detector = PartitionDetector(engine, 0, 0.0)
    for offset, output in enumerate(outputs):
        detector.accept(offset, decode_envelope(output.value))
    detector.release(everything=True)
    return detector


@pytest.mark.parametrize("hot", [False, True], ids=["quiet", "active-episode"])
def test_a_jump_to_year_9999_ticks_a_bounded_number_of_times(hot: bool) -> None:
    config = Settings().detectors
    bound = (config.clock_catchup_hours * 3600 + config.idle_tick_seconds) / config.tick_interval_seconds + 1
    detector = _detector_after(NOW, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), hot=hot)
    assert detector.stats.ticks <= bound
    assert detector.stats.records == 4


def test_a_year_long_gap_skips_its_middle_but_the_alerts_still_equal_the_backtest() -> None:
    """A partition silent for a year used to tick all of its states at each of 8,760 hours."""
    start = datetime(2025, 1, 6, tzinfo=UTC)
    detector = _detector_after(start, start + timedelta(days=365), hot=True)
    assert 0 < detector.stats.ticks <= 48 + 2 * 60 + 2  # quiet hours of the catch-up window, minutes while hot
    stream = {(a.dedup_key, a.action.value, a.fired_at) for a in detector.flush().alerts}
    events = [GatewayEvent.model_validate(event(i, "k", start + timedelta(seconds=i), "400", session="s"))
              for i in range(3)]
    events.append(GatewayEvent.model_validate(event(99, "k", start + timedelta(days=365), "0.01")))
    backtest = {(a.dedup_key, a.action.value, a.fired_at) for a in run_backtest(events, Settings())}
    assert stream == backtest
    assert {action for _, action, _ in stream} >= {"trigger", "resolve"}


def test_a_clock_left_in_year_9999_is_rewound_on_restore() -> None:
    """State written before event times were checked: the partition's clock stayed in 9999 for good."""
    engine = Engine(Settings().detectors)
    stuck = _detector_after(NOW, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), hot=False)
    flush = stuck.flush()
    restored = PartitionDetector(engine, 0, 0.0)
    restored.restore([*flush.states, flush.meta])
    assert not restored.rewind_clock_past(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())
    assert restored.states and restored.rewind_clock_past(NOW.timestamp() + 3600)
    assert not restored.states  # its one key's state was last seen in 9999
    msgs = [RawMessage(orjson.dumps(event(200 + i, "k", NOW + timedelta(minutes=i), "0.01")), "raw", 0, i)
            for i in range(3)]
    outputs = envelope_outputs(route_records(parse_batch(msgs, Settings().adapters), engine.routes, 1), "routed")
    for offset, output in enumerate(outputs, start=100):
        restored.accept(offset, decode_envelope(output.value))
    restored.release(everything=True)
    assert (restored.stats.records, restored.stats.late) == (3, 0)
    assert restored.states["key:k"].last_ts == (NOW + timedelta(minutes=2)).timestamp()
