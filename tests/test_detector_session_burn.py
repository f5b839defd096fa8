"""session_burn: one session over $X in under an hour; X relative to the key's own sessions, with a floor."""

from __future__ import annotations

from datetime import timedelta

from detector_kit import T0, event, of, only, run

CONFIG = only(session_burn=True)


def session(name, start, minutes, dollars_per_minute, **fields):
    return [event(start + timedelta(minutes=m), dollars_per_minute, session=name, **fields) for m in range(minutes)]


def test_a_session_burning_100_dollars_in_40_minutes_pages_once_and_resolves():
    burst = session("agent-42", T0 + timedelta(hours=9), 40, 2.5, model="claude-opus-4", alias="dev-box", user="ana")
    alerts = run(burst, CONFIG)
    [trigger] = of(alerts, "session_burn", "trigger")
    assert trigger.labels["session"] == "agent-42" and trigger.labels["user"] == "ana"
    assert trigger.dedup_key.startswith("session_burn:key:k1:agent-42:")
    # $25 in its last 10 minutes: on pace, paged on the request that crossed half the $50 floor
    assert trigger.observed >= 25 > trigger.observed - 2.5 and "on pace" in trigger.summary
    assert trigger.root_cause[0].kind == "session" and trigger.root_cause[0].name == "agent-42"
    assert any(c.kind == "model" and c.name == "claude-opus-4" for c in trigger.root_cause)
    assert "agent-42" in trigger.summary and "$50.00" in trigger.summary
    [resolve] = of(alerts, "session_burn", "resolve")
    assert resolve.dedup_key == trigger.dedup_key


def test_two_runaway_sessions_are_two_episodes():
    start = T0 + timedelta(hours=9)
    alerts = run(session("a", start, 30, 3) + session("b", start, 30, 3), CONFIG)
    assert sorted(a.labels["session"] for a in of(alerts, "session_burn", "trigger")) == ["a", "b"]


def test_a_single_large_but_normal_session_does_not_page():
    assert not run(session("big", T0 + timedelta(hours=9), 45, 1.0), CONFIG)  # $45 in 45 min


def test_slow_expensive_session_is_not_a_burn():
    # $120 over four hours never reaches $50 within an hour
    assert not run(session("slow", T0 + timedelta(hours=9), 240, 0.5), CONFIG)


def test_threshold_follows_the_keys_own_session_costs():
    # 40 ordinary sessions of ~$80-95 each: the derived limit becomes 3 x p99 (~$280)
    history = []
    for i in range(40):
        history += session(f"s{i}", T0 + timedelta(hours=2 * i), 30, 2.7 + (i % 5) * 0.1)
    later = T0 + timedelta(hours=100)
    alerts = run(history + session("usual-big", later, 50, 2.4), CONFIG)  # $120: over the floor, normal here
    early = [a for a in of(alerts, "session_burn", "trigger") if a.fired_at < later]
    assert early  # before enough sessions completed only the $50 floor applied
    assert not [a for a in of(alerts, "session_burn", "trigger") if a.fired_at >= later]
    runaway = session("runaway", later, 50, 8.0)  # $400 in 50 minutes
    [trigger] = [a for a in of(run(history + runaway, CONFIG), "session_burn", "trigger") if a.fired_at >= later]
    assert trigger.details["derived"] is True and 200 < trigger.expected < 400


def test_fixed_threshold_from_yaml():
    config = only({"session_burn": {"threshold_usd": "20"}}, session_burn=True)
    [trigger] = of(run(session("x", T0, 30, 1.0), config), "session_burn", "trigger")
    assert trigger.expected == 20.0


def test_a_fast_burn_pages_on_pace_and_a_steady_big_session_does_not():
    fast = session("fast", T0 + timedelta(hours=9), 30, 3.0)  # $30 in its first 10 minutes
    [trigger] = of(run(fast, CONFIG), "session_burn", "trigger")
    assert trigger.fired_at - T0 - timedelta(hours=9) <= timedelta(minutes=10)
    steady = session("steady", T0 + timedelta(hours=9), 60, 0.8)  # $48 over an hour: under $X, never on pace
    assert not of(run(steady, CONFIG), "session_burn", "trigger")
    config = only({"session_burn": {"pace_fraction": 0}}, session_burn=True)
    [late] = of(run(fast, config), "session_burn", "trigger")
    assert late.fired_at > trigger.fired_at and late.observed > 50
