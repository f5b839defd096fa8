"""burn_rate: a runaway loop pages within minutes; seasonality, growth and new keys do not page."""

from __future__ import annotations

from datetime import timedelta

from detector_kit import T0, event, flat, hourly_traffic, of, office_hours, only, run

from spendwatch.detectors.backtest import run_backtest
from spendwatch.detectors.engine import Engine

CONFIG = only(burn_rate=True)


def runaway(start, minutes, dollars_per_hour=300.0, sessions=None, prefix="loop", **fields):
    """An agent loop: a request every 20 s; without session ids (many gateways send none), or cycling
    through ``sessions`` of them (an agent that opens a session per task)."""
    per_request = dollars_per_hour / 180
    return [event(start + timedelta(seconds=20 * i), per_request, model="claude-opus-4",
                  session=None if sessions is None else f"{prefix}-{i % sessions}", **fields)
            for i in range(minutes * 3)]


def test_runaway_loop_on_a_weekend_night_pages_within_minutes():
    history = hourly_traffic(T0, 24 * 12, office_hours(weekday_rate=6, night_rate=0.5, weekend_rate=0.5))
    start = T0 + timedelta(days=12, hours=2)  # Saturday 02:00
    alerts = run(history + runaway(start, 120), CONFIG)
    [trigger] = of(alerts, "burn_rate", "trigger")
    time_to_detect = trigger.fired_at - start
    # the 60-minute rate must be $100/h over the usual: 20 minutes of a $300/h loop (runaway_loop pages sooner)
    assert time_to_detect <= timedelta(minutes=20), time_to_detect
    assert trigger.unit == "usd_per_hour" and trigger.details["trigger"] in {"rate", "projection"}
    assert trigger.root_cause[0].name == "claude-opus-4"
    # one episode: repeats share its dedup key, and it resolves once the loop stops
    assert {a.dedup_key for a in of(alerts, "burn_rate")} == {trigger.dedup_key}
    [resolve] = of(alerts, "burn_rate", "resolve")
    assert start + timedelta(minutes=120) < resolve.fired_at <= start + timedelta(minutes=120 + 120 + 30 + 2)


def test_rate_anomaly_alone_pages_within_minutes():
    config = only(burn_rate=True)
    history = hourly_traffic(T0, 24 * 12, office_hours(weekday_rate=6, night_rate=0.5, weekend_rate=0.5))
    start = T0 + timedelta(days=12, hours=2)
    [trigger, *_] = of(run(history + runaway(start, 60), config), "burn_rate", "trigger")
    assert trigger.details["trigger"] == "rate"
    assert trigger.fired_at - start <= timedelta(minutes=25)
    assert trigger.observed > 4 * trigger.expected and trigger.details["score"] >= 0.999
    assert "its usual" in trigger.summary


def test_model_does_not_learn_from_the_anomalies_it_flags():
    history = hourly_traffic(T0, 24 * 10, flat(2.0))
    loop_start = T0 + timedelta(days=10, hours=3)
    events = history + runaway(loop_start, 6 * 60, dollars_per_hour=120)
    engine_config = CONFIG
    engine = Engine(engine_config)
    state = engine.new_state("key:k1")
    for e in sorted(events, key=lambda e: e.event_time):
        engine.process(state, e)
    scorer = state.detectors["burn_rate"].scorer
    # six hours at $120/h were seen, none of it learned: the expectation for those hours is still ~$2/h
    for h in range(6):
        assert scorer.expected((loop_start + timedelta(hours=h)).timestamp()) < 3e6
    # and the same loop the next night still pages
    second = run(events + runaway(loop_start + timedelta(days=1), 60, dollars_per_hour=120), engine_config)
    assert len(of(second, "burn_rate", "trigger")) == 2


def test_projection_when_enabled_pages_a_sustained_moderate_overspend():
    # off by default (spend_spike projects the day with evidence counted in sessions)
    config = only({"burn_rate": {"projection_factor": 3}}, burn_rate=True)
    history = hourly_traffic(T0, 24 * 10, flat(2.0))  # $48/day
    day = T0 + timedelta(days=10)
    elevated = hourly_traffic(day, 12, flat(10.0), per_hour=12)  # 5x from midnight: not a rate anomaly
    assert not of(run(history + elevated, CONFIG), "burn_rate")
    alerts = run(history + elevated, config)
    [trigger] = of(alerts, "burn_rate", "trigger")
    assert trigger.details["trigger"] == "projection"
    assert trigger.details["projected_day_usd"] > 3 * 48
    assert "day ends at" in trigger.summary
    assert trigger.fired_at < day + timedelta(hours=6)


def test_weekday_weekend_seasonality_does_not_page():
    traffic = hourly_traffic(T0, 24 * 21, office_hours(weekday_rate=25, night_rate=1, weekend_rate=2), per_hour=12)
    assert not run(traffic, CONFIG)


def test_gradual_growth_to_twice_over_a_week_does_not_page():
    def growing(hour):
        days = (hour - T0).total_seconds() / 86400
        base = 4.0 if days < 7 else 4.0 * min(2.0, 1 + (days - 7) / 7)
        return base * (1.5 if 9 <= hour.hour < 18 else 0.6)

    assert not run(hourly_traffic(T0, 24 * 21, growing), CONFIG)


def test_new_and_sparse_keys_are_judged_by_the_absolute_guard_only():
    # a brand-new key at $60/h, and a key touched once a day: no page
    new_key = hourly_traffic(T0, 6, flat(60.0), key="new")
    sparse = [event(T0 + timedelta(days=d, hours=15), 8, key="sparse") for d in range(10)]
    assert not run(new_key + sparse, CONFIG)
    # a brand-new key burning $400/h does page, on the absolute guard
    [trigger] = of(run(runaway(T0, 30, dollars_per_hour=400, key="new2"), CONFIG), "burn_rate", "trigger")
    assert trigger.details["trigger"] == "absolute" and "absolute guard" in trigger.summary


def test_a_single_large_but_normal_session_does_not_page():
    history = hourly_traffic(T0, 24 * 10, office_hours(weekday_rate=10, night_rate=1, weekend_rate=1))
    session = [event(T0 + timedelta(days=10, hours=11, minutes=m), 1.0, session="big") for m in range(0, 45)]
    alerts = list(run_backtest(history + session, CONFIG))
    assert not alerts


def test_a_lasting_shift_becomes_normal_instead_of_locking_out():
    # a key that moves to 75x its spend for good (a new product on it): paged once, then learned
    history = hourly_traffic(T0, 24 * 10, flat(2.0))
    shift_at = T0 + timedelta(days=10, hours=9)
    after = hourly_traffic(shift_at, 24 * 5, flat(150.0), per_hour=12)
    alerts = run(history + after, CONFIG)
    [trigger] = of(alerts, "burn_rate", "trigger")
    assert trigger.fired_at - shift_at <= timedelta(minutes=60)  # the 60-minute rate must be $50/h over
    # it resolves: the relearn_hours run became the new normal (it stayed open for good before)
    [resolve] = of(alerts, "burn_rate", "resolve")
    assert resolve.fired_at - shift_at <= timedelta(hours=14)
    engine = Engine(CONFIG)
    state = engine.new_state("key:k1")
    for e in sorted(history + after, key=lambda e: e.event_time):
        engine.process(state, e)
    expected = state.detectors["burn_rate"].scorer.expected(after[-1].event_time.timestamp())
    assert 100e6 < expected < 200e6


def test_a_burst_is_held_not_learned_and_the_next_one_still_pages():
    history = hourly_traffic(T0, 24 * 10, flat(2.0))
    first = T0 + timedelta(days=10, hours=3)
    events = history + runaway(first, 4 * 60, dollars_per_hour=120) + hourly_traffic(
        first + timedelta(hours=4), 20, flat(2.0)) + runaway(first + timedelta(days=1), 60, dollars_per_hour=120)
    assert len(of(run(events, CONFIG), "burn_rate", "trigger")) == 2


def test_one_heavy_session_is_session_burns_to_judge_not_a_burn():
    # A ~$1/h key whose biggest session of the fortnight costs $180 within the hour: session costs are
    # heavy-tailed, and whether one is too big for its key is judged on the key's sessions (session_burn)
    history = hourly_traffic(T0, 24 * 10, office_hours(weekday_rate=2, night_rate=0.5, weekend_rate=0.5))
    start = T0 + timedelta(days=10, hours=10)
    big = runaway(start, 60, dollars_per_hour=180, sessions=1)
    assert not of(run(history + big, CONFIG), "burn_rate")
    # the same burn spread over the key's sessions (several agents at once) is a burn: it pages
    spread = runaway(start, 60, dollars_per_hour=180, sessions=4)
    [trigger] = of(run(history + spread, CONFIG), "burn_rate", "trigger")
    assert trigger.details["trigger"] == "rate" and trigger.fired_at - start <= timedelta(minutes=60)
    # and so does one session burning on top of a key already burning well over its usual
    both = runaway(start, 60, dollars_per_hour=180, sessions=1, prefix="big") + runaway(
        start, 60, dollars_per_hour=150, sessions=3)
    assert of(run(history + both, CONFIG), "burn_rate", "trigger")
