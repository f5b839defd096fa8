"""runaway_loop: a session that keeps calling is paged within calls, on any model, at any call rate;
ordinary sessions, long bursty ones and nightly batch jobs are not.

The traffic is drawn from a seeded generator (several seeds per case) with the shapes of real
gateway logs: ordinary agent sessions whose context grows call by call at irregular gaps, loops that
re-send near the same request at a steady cadence with latency jitter.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from detector_kit import T0, of, only, run

from spendwatch.detectors.engine import Engine
from spendwatch.schemas.event import GatewayEvent

CONFIG = only(runaway_loop=True)
SEEDS = range(5)
CHEAP, FRONTIER = ("gpt-4o-mini", 0.15), ("claude-opus-4-1", 15.0)  # model, $ per million input tokens
_ids = iter(range(10**9))


def call(when: datetime, session: str, model: tuple[str, float], input_tokens: int, output_tokens: int = 600,
         key: str = "k1", alias: str = "dev-agent") -> GatewayEvent:
    name, per_million = model
    dollars = (input_tokens + 5 * output_tokens) * per_million / 1e6
    return GatewayEvent(
        event_id=f"r{next(_ids)}", event_time=when, gateway="litellm", api_key_hash=key, api_key_alias=alias,
        session_id=session, model=name, cost_usd=Decimal(str(round(dollars, 6))), input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def ordinary_history(rng: random.Random, days: int = 7, model=FRONTIER, **fields) -> list[GatewayEvent]:
    """A developer's agent sessions on weekdays 9-18: 5-60 calls at irregular gaps, context growing."""
    events = []
    for day in range(days):
        if (T0 + timedelta(days=day)).weekday() >= 5:
            continue
        for n in range(rng.randint(6, 12)):
            t = T0 + timedelta(days=day, hours=9 + rng.uniform(0, 9))
            context = rng.randint(8_000, 30_000)
            for _ in range(max(5, int(rng.lognormvariate(2.9, 0.6)))):
                events.append(call(t, f"d{day}-{n}", model, context, int(rng.lognormvariate(6.3, 0.5)), **fields))
                t += timedelta(seconds=4 + rng.expovariate(1 / 20))
                context += rng.randint(600, 2_500)
    return events


def loop(rng: random.Random, start: datetime, calls_per_10_min: float, hours: float, model, session: str = "stuck",
         **fields) -> list[GatewayEvent]:
    """An agent re-sending (almost) the same request at a steady cadence, latency jitter of +-20%."""
    gap, context = 600 / calls_per_10_min, rng.randint(15_000, 90_000)
    events, t = [], start
    while t < start + timedelta(hours=hours):
        events.append(call(t, session, model, context + rng.randint(-150, 150), rng.randint(400, 460), **fields))
        t += timedelta(seconds=gap * rng.uniform(0.8, 1.2))
    return events


def first_page(alerts, session="stuck"):
    triggers = [a for a in of(alerts, "runaway_loop", "trigger") if a.labels.get("session") == session]
    return min(triggers, key=lambda a: a.fired_at) if triggers else None


@pytest.mark.parametrize("model", [CHEAP, FRONTIER], ids=["cheap", "frontier"])
@pytest.mark.parametrize(("rate", "max_calls"), [(60, 30), (6, 12), (2, 12)])
def test_a_loop_is_paged_within_a_few_calls_at_any_rate_on_any_model(rate, max_calls, model):
    for seed in SEEDS:
        rng = random.Random(seed)
        start = T0 + timedelta(days=7, hours=rng.choice([3, 14, 22]), minutes=rng.randint(0, 59))
        looping = loop(rng, start, rate, hours=6, model=model)
        trigger = first_page(run(ordinary_history(rng, model=model) + looping, CONFIG))
        assert trigger is not None, (seed, rate, model)
        calls_before = sum(e.event_time <= trigger.fired_at for e in looping)
        assert 5 <= calls_before <= max_calls, (seed, calls_before)
        minutes = (trigger.fired_at - start).total_seconds() / 60
        assert minutes <= max_calls * 10 / rate * 1.3, (seed, minutes)


def test_a_slow_loop_is_paged_on_its_fifth_call():
    """At 2 calls per 10 minutes each call asked for costs 5 minutes: a loop on a key whose runs never
    looped pages on its fifth call (four steady repeats), about 20 minutes in, not the sixth."""
    for seed in SEEDS:
        rng = random.Random(seed)
        start = T0 + timedelta(days=7, hours=14)
        looping = loop(rng, start, 2, hours=3, model=CHEAP)
        trigger = first_page(run(ordinary_history(rng, model=CHEAP) + looping, CONFIG))
        assert trigger is not None, seed
        assert sum(e.event_time <= trigger.fired_at for e in looping) == 5, seed
        assert trigger.fired_at - start <= timedelta(minutes=4 * 5 * 1.2), seed


def test_the_page_says_what_a_human_needs_and_cheap_loops_are_info():
    rng = random.Random(1)
    start = T0 + timedelta(days=7, hours=2)
    alerts = run(ordinary_history(rng, model=CHEAP) + loop(rng, start, 6, 2, CHEAP), CONFIG)
    trigger = first_page(alerts)
    assert trigger.severity.value == "info"  # under the $1/h floor: a loop, but not worth waking anyone
    for part in ("session stuck", "key dev-agent", "gpt-4o-mini", "times in", "without a pause", "/h if it keeps going"):
        assert part in trigger.summary, trigger.summary
    assert trigger.details["calls"] >= 5 and trigger.details["usd_per_hour"] < 1
    assert trigger.root_cause[0].kind == "session" and trigger.root_cause[0].name == "stuck"
    [resolve] = of(alerts, "runaway_loop", "resolve")  # resolves once the session stops
    assert resolve.dedup_key == trigger.dedup_key
    assert resolve.fired_at >= start + timedelta(hours=2, minutes=30)

    frontier = first_page(run(ordinary_history(rng) + loop(rng, start, 30, 2, FRONTIER), CONFIG))
    assert frontier.severity.value == "error" and frontier.details["usd_per_hour"] > 1


@pytest.mark.parametrize("seed", SEEDS)
def test_ordinary_and_long_bursty_sessions_are_not_paged(seed):
    rng = random.Random(seed)
    events = ordinary_history(rng, days=14)
    # a long but normal session: 3 hours of bursts with reading pauses, context growing to its cap
    t, context = T0 + timedelta(days=9, hours=10), 20_000
    for _ in range(300):
        events.append(call(t, "long-refactor", FRONTIER, min(context, 180_000), int(rng.lognormvariate(6.5, 0.5))))
        t += timedelta(seconds=rng.choice([5, 8, 15, 30, 60, 240]) * rng.uniform(0.5, 1.5))
        context += rng.randint(200, 2_000)
    assert not of(run(events, CONFIG), "runaway_loop", "trigger")


@pytest.mark.parametrize("seed", SEEDS)
def test_a_nightly_batch_job_is_not_paged_once_the_key_has_run_it_a_few_nights(seed):
    rng = random.Random(seed)
    events = []
    for night in range(10):  # every night at 01:00 for ~2 h: the same prompt template, every 5-7 s
        t, end = T0 + timedelta(days=night, hours=1), T0 + timedelta(days=night, hours=rng.uniform(2.5, 3.2))
        while t < end:
            events.append(call(t, f"batch-{night}", CHEAP, 3_000 + rng.randint(-20, 20), rng.randint(150, 170),
                               key="svc", alias="nightly-batch"))
            t += timedelta(seconds=rng.uniform(5, 7))
    alerts = run(events, CONFIG)
    # a new job re-sending one prompt looks like a loop: its first nights page, each raising the bar 3-fold
    assert of(alerts, "runaway_loop", "trigger")[0].fired_at < T0 + timedelta(days=1)
    assert not [a for a in of(alerts, "runaway_loop", "trigger") if a.fired_at >= T0 + timedelta(days=6)]


def test_a_loop_on_a_batch_key_still_pages_once_it_outlasts_the_batch_jobs():
    rng = random.Random(3)
    events = []
    for night in range(8):
        t, end = T0 + timedelta(days=night, hours=1), T0 + timedelta(days=night, hours=2)
        while t < end:
            events.append(call(t, f"batch-{night}", CHEAP, 3_000 + rng.randint(-20, 20), 160, key="svc"))
            t += timedelta(seconds=rng.uniform(5, 7))
    start = T0 + timedelta(days=8, hours=12)
    trigger = first_page(run(events + loop(rng, start, 60, 8, CHEAP, key="svc"), CONFIG))
    assert trigger is not None and (trigger.fired_at - start) <= timedelta(hours=6, minutes=5)  # endless_hours


def test_failed_retries_are_left_to_error_storm():
    start = T0 + timedelta(hours=9)
    failing = [call(start + timedelta(seconds=2 * i), "retry", FRONTIER, 20_000).model_copy(
        update={"status": "failure", "error_type": "rate_limit_error"}) for i in range(600)]
    assert not of(run(failing, CONFIG), "runaway_loop")


def test_state_survives_a_snapshot_mid_loop():
    rng = random.Random(2)
    events = sorted(ordinary_history(rng, days=3) + loop(rng, T0 + timedelta(days=3), 20, 2, FRONTIER),
                    key=lambda e: e.event_time)
    engine = Engine(CONFIG)
    whole, split = engine.new_state("key:k1"), engine.new_state("key:k1")
    pages_whole, pages_split = [], []
    for i, e in enumerate(events):
        pages_whole += engine.process(whole, e)
        if i == len(events) - 30:
            split = Engine(CONFIG).loads(engine.dumps(split))
        pages_split += engine.process(split, e)
    assert of(pages_whole, "runaway_loop", "trigger")
    assert [a.model_dump() for a in pages_whole] == [a.model_dump() for a in pages_split]
