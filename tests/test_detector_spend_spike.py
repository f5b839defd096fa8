"""spend_spike: 24h running spend > 3x the 7-day daily mean, fired on the crossing request."""

from __future__ import annotations

from datetime import timedelta

from detector_kit import T0, event, flat, hourly_traffic, of, office_hours, only, run

CONFIG = only(spend_spike=True)


def test_fires_on_the_request_that_crosses_the_line_and_resolves_once():
    history = hourly_traffic(T0, 24 * 10, flat(2.0), alias="batch-jobs", team="ml")  # $48/day
    day11 = T0 + timedelta(days=10, hours=10)
    # a burst of $10 requests every minute: the 24h sum crosses 3 x $48 + $50 = $194 during it
    burst = [event(day11 + timedelta(minutes=m), 10, model="claude-opus-4", session="agent-7",
                   alias="batch-jobs", team="ml") for m in range(30)]
    after = hourly_traffic(day11 + timedelta(hours=1), 24 * 3, flat(2.0), alias="batch-jobs", team="ml")
    alerts = run(history + burst + after, CONFIG)

    triggers = of(alerts, "spend_spike", "trigger")
    assert len(triggers) == 1
    trigger = triggers[0]
    # the 24h spend before that request was at or under the line; with it, over
    crossing = trigger.fired_at
    assert crossing in {e.event_time for e in burst}
    before = [e for e in history + burst if crossing - timedelta(hours=23, minutes=50) <= e.event_time < crossing]
    spent_before = sum(float(e.cost_usd) for e in before)
    assert spent_before <= 3 * 48 + 50 < spent_before + 10
    assert abs(trigger.expected - 48.0) < 0.01 and trigger.observed > 194
    assert "x its 7-day daily mean of $48.00" in trigger.summary
    assert trigger.labels["key_hash"] == "k1" and trigger.labels["key_alias"] == "batch-jobs"
    assert trigger.labels["team"] == "ml"
    assert {"model", "session"} <= {c.kind for c in trigger.root_cause}
    opus = next(c for c in trigger.root_cause if c.name == "claude-opus-4")
    assert opus.cost_usd > 100 and opus.share > 0.5
    assert len(trigger.series) == 24 and any(p.baseline_usd is not None for p in trigger.series)

    resolves = of(alerts, "spend_spike", "resolve")
    assert len(resolves) == 1 and resolves[0].dedup_key == trigger.dedup_key
    assert resolves[0].fired_at > crossing + timedelta(hours=23)
    assert not of(alerts, "spend_spike", "repeat") or all(
        a.dedup_key == trigger.dedup_key for a in of(alerts, "spend_spike", "repeat"))


def test_min_dollar_excess_keeps_a_cheap_key_quiet():
    history = hourly_traffic(T0, 24 * 8, flat(0.01))  # $0.24/day
    spike = [event(T0 + timedelta(days=8, hours=3, minutes=m), 0.5) for m in range(20)]  # $10: 40x, +$9
    assert not of(run(history + spike, CONFIG), "spend_spike")


def test_weekday_weekend_seasonality_does_not_page():
    traffic = hourly_traffic(T0, 24 * 21, office_hours(weekday_rate=25, night_rate=1, weekend_rate=2))
    assert not run(traffic, CONFIG)


def test_gradual_growth_to_twice_over_a_week_does_not_page():
    def growing(hour):
        days = (hour - T0).total_seconds() / 86400
        return 4.0 if days < 7 else 4.0 * min(2.0, 1 + (days - 7) / 7)

    assert not run(hourly_traffic(T0, 24 * 21, growing), CONFIG)


def test_new_key_is_judged_by_the_absolute_guard_only():
    # day one of a brand-new key: $600 is "infinitely" more than its (absent) baseline, but no page
    new_key = hourly_traffic(T0, 24, flat(25.0))
    assert not run(new_key, CONFIG)
    # the absolute guard still catches a new key burning $2,400 in its first day
    runaway = hourly_traffic(T0, 24, flat(100.0))
    [trigger] = of(run(runaway, CONFIG), "spend_spike", "trigger")
    assert "absolute guard" in trigger.summary and trigger.expected is None


def test_sparse_key_does_not_page():
    # a key used for a few dollars on one day in three, then a somewhat bigger day
    events = [event(T0 + timedelta(days=d, hours=14), 6) for d in range(0, 15, 3)]
    events += [event(T0 + timedelta(days=15, hours=14, minutes=m), 5) for m in range(6)]  # $30 day
    assert not run(events, CONFIG)


def test_a_single_large_but_normal_session_does_not_page():
    history = hourly_traffic(T0, 24 * 8, flat(5.0))  # $120/day
    session = [event(T0 + timedelta(days=8, hours=11, minutes=m), 2, session="big-refactor") for m in range(40)]
    assert not run(history + session, CONFIG)
