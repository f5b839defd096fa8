"""session_burn: one session over $X in under an hour; X relative to the key's own sessions, with a floor."""

from __future__ import annotations

from datetime import timedelta

from detector_kit import T0, event, of, only, run

from spendwatch.schemas.pricing import input_micros_per_token

CONFIG = only(session_burn=True)


def session(name, start, minutes, dollars_per_minute, work=None, **fields):
    """One call a minute carrying its dollars' worth of tokens at the model's input price (or ``work`` tokens)."""
    price = input_micros_per_token(fields.get("model", "gpt-4o"), None)
    tokens = int(dollars_per_minute * 1e6 / price) if work is None else work
    return [event(start + timedelta(minutes=m), dollars_per_minute, session=name, **fields).model_copy(
        update={"input_tokens": tokens, "output_tokens": 0}) for m in range(minutes)]


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
    # 40 ordinary sessions of ~$80-95 each: once they are history, X is 5 x (1 + 10/n) x their maximum
    history = []
    for i in range(40):
        history += session(f"s{i}", T0 + timedelta(hours=2 * i), 30, 2.7 + (i % 5) * 0.1)
    later = T0 + timedelta(hours=100)
    alerts = run(history + session("usual-big", later, 50, 2.4), CONFIG)  # $120: over the floor, normal here
    early = [a for a in of(alerts, "session_burn", "trigger") if a.fired_at < later]
    assert early  # before min_sessions completed only the $50 floor applied
    assert not [a for a in of(alerts, "session_burn", "trigger") if a.fired_at >= later]
    runaway = session("runaway", later, 50, 16.0)  # $800 in 50 minutes
    [trigger] = [a for a in of(run(history + runaway, CONFIG), "session_burn", "trigger") if a.fired_at >= later]
    assert trigger.details["derived"] is True and 400 < trigger.expected < 800


def sparse_key_history(days=10):
    """A sparse key: two short economy sessions a day, never above $0.30."""
    events = []
    for day in range(days):
        for n, hour in enumerate((10, 15)):
            events += session(f"d{day}-{n}", T0 + timedelta(days=day, hours=hour), 6, 0.03 + 0.01 * n,
                              model="gpt-5-mini")
    return events


def test_a_sparse_keys_session_burn_pages_within_minutes():
    start = T0 + timedelta(days=10, hours=11)
    burn = session("burn", start, 40, 0.6, model="claude-sonnet-4-5")  # $24 in 40 min: under the old $50
    [trigger] = of(run(sparse_key_history() + burn, CONFIG), "session_burn", "trigger")
    assert trigger.labels["session"] == "burn" and trigger.details["derived"] is True
    assert trigger.fired_at - start <= timedelta(minutes=10) and trigger.expected < 10
    # the same burn on a new key (no sessions yet) waits for the absolute floor: it never gets there
    assert not of(run(burn, CONFIG), "session_burn", "trigger")


def test_a_long_ordinary_session_at_the_keys_usual_pace_does_not_page():
    # an agent key whose frontier sessions run 10-30 minutes at $0.50 a minute (up to $15)
    history = []
    for day in range(10):
        minutes = 10 + (day * 7) % 21
        history += session(f"d{day}", T0 + timedelta(days=day, hours=10), minutes, 0.5, model="claude-opus-4-1")
    start = T0 + timedelta(days=10, hours=10)
    long = session("long", start, 240, 0.5, model="claude-opus-4-1")  # $120 over four hours at the usual pace
    assert not of(run(history + long, CONFIG), "session_burn", "trigger")
    burst = session("burst", start, 30, 8.0, model="claude-opus-4-1")  # $240 in 30 minutes
    [trigger] = of(run(history + burst, CONFIG), "session_burn", "trigger")
    assert trigger.fired_at - start <= timedelta(minutes=10)


def test_a_session_that_paged_raises_the_bar_by_the_factor_not_its_full_cost():
    start = T0 + timedelta(days=10, hours=11)
    first = session("first", start, 40, 2.0, model="claude-opus-4-1")  # $80 on a key of $0.30 sessions
    again = session("again", start + timedelta(hours=3), 40, 2.0, model="claude-opus-4-1")
    alerts = of(run(sparse_key_history() + first + again, CONFIG), "session_burn", "trigger")
    # the first is learned as the X it crossed (~$6), so the second (another $80) still pages
    assert [a.labels["session"] for a in alerts] == ["first", "again"]
    assert alerts[1].expected < 80


def test_a_snapshot_from_the_quantile_version_loads():
    from spendwatch.detectors.config import BaselineConfig, SessionBurnConfig
    from spendwatch.detectors.session_burn import SessionBurn
    from spendwatch.detectors.snapshot import quantile_state
    from river import stats

    costs = stats.Quantile(0.99)
    for x in (1_000_000, 2_000_000, 3_000_000):
        costs.update(x)
    detector = SessionBurn(SessionBurnConfig(), BaselineConfig(), "key", "k1")
    old = {"sessions": {"s": (1.0, 0.0, 5, {0: 5}, {"m": [5, 1]})}, "costs": quantile_state(costs), "completed": 40}
    detector.__setstate__(old)
    detector.bind(SessionBurnConfig(), BaselineConfig())
    assert detector.sessions["s"].flagged == 0 and detector.completed == 40
    assert 0 < detector.history[0] <= 3_000_000 and detector.threshold() == 18_750_000  # 5 x 1.25 x $3


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


def test_on_pace_never_pages_below_the_minimum():
    # a sparse key (X = the $5 minimum): $3 in 6 minutes is on pace for X, but not $5 yet
    start = T0 + timedelta(days=10, hours=11)
    short = session("short", start, 6, 0.5, model="claude-opus-4-1")
    assert not of(run(sparse_key_history() + short, CONFIG), "session_burn", "trigger")
    longer = session("longer", start, 12, 0.5, model="claude-opus-4-1")
    [trigger] = of(run(sparse_key_history() + longer, CONFIG), "session_burn", "trigger")
    assert trigger.observed >= 5 and trigger.expected == 5


def mixed_agent_history(days=10, opus=True):
    """An agent key: a long gpt-5-mini session a day (12M tokens, $3) and, if ``opus``, a short opus one (200k, $3)."""
    events = []
    for day in range(days):
        events += session(f"mini{day}", T0 + timedelta(days=day, hours=10), 30, 0.1, model="gpt-5-mini")
        if opus:
            events += session(f"opus{day}", T0 + timedelta(days=day, hours=15), 10, 0.3, model="claude-opus-4-1")
    return events


def test_the_keys_usual_work_on_a_frontier_model_it_uses_is_not_a_burn():
    start = T0 + timedelta(days=10, hours=11)
    # 12M tokens of opus in 30 minutes: $180, 60x the key's sessions in dollars, its usual size in tokens
    long = session("long", start, 30, 6.0, model="claude-opus-4-1")
    assert not of(run(mixed_agent_history() + long, CONFIG), "session_burn", "trigger")
    dollars_only = only({"session_burn": {"work_factor": 0}}, session_burn=True)
    [paged] = of(run(mixed_agent_history() + long, dollars_only), "session_burn", "trigger")
    assert paged.expected < 25  # 5 x 1.5 x $3
    # a burn does far more work than the key's biggest session: paged within minutes
    burn = session("burn", start, 30, 40.0, model="claude-opus-4-1")  # 80M tokens, $1,200
    [trigger] = of(run(mixed_agent_history() + burn, CONFIG), "session_burn", "trigger")
    assert trigger.fired_at - start <= timedelta(minutes=10)
    assert 11e6 < trigger.details["history_max_tokens"] <= 12e6 and 25 < trigger.expected < 600


def test_work_on_a_model_pricier_than_any_the_key_used_is_priced_at_the_priciest_it_used():
    start = T0 + timedelta(days=10, hours=11)
    long = session("long", start, 30, 6.0, model="claude-opus-4-1")  # the same 12M tokens of opus, $180
    [trigger] = of(run(mixed_agent_history(opus=False) + long, CONFIG), "session_burn", "trigger")
    # its work at gpt-5-mini's price allows ~$12: the dollar limit (5 x 2 x $3) holds
    assert trigger.expected <= 30 and trigger.fired_at - start <= timedelta(minutes=10)


def test_a_snapshot_from_before_the_work_history_loads():
    from spendwatch.detectors.config import BaselineConfig, SessionBurnConfig
    from spendwatch.detectors.session_burn import SessionBurn

    detector = SessionBurn(SessionBurnConfig(), BaselineConfig(), "key", "k1")
    old = {"sessions": {"s": (1.0, 0.0, 5, {0: 5}, {"m": [5, 1]}, 0)}, "history": (3_000_000.0, 0.0), "completed": 40}
    detector.__setstate__(old)
    detector.bind(SessionBurnConfig(), BaselineConfig())
    assert detector.sessions["s"].work == {} and detector.sessions["s"].price == 0.0
    # without a token history only the dollars count: X is 5 x 1.25 x $3
    assert detector.threshold() == 18_750_000 and detector.work_threshold() == 0.0
    again = SessionBurn(SessionBurnConfig(), BaselineConfig(), "key", "k1")
    again.__setstate__(detector.__getstate__())
    assert again.work_history == detector.work_history and again.sessions["s"].peak == 5


def test_a_session_paged_at_the_new_keys_floor_is_learned_as_the_floors_worth_of_tokens():
    from spendwatch.detectors.base import Context, Observation
    from spendwatch.detectors.baseline import SpendBaseline
    from spendwatch.detectors.config import BaselineConfig, SessionBurnConfig
    from spendwatch.detectors.contributors import Contributors
    from spendwatch.detectors.session_burn import SessionBurn

    detector = SessionBurn(SessionBurnConfig(), BaselineConfig(), "key", "k1")
    ctx = Context("key", "k1", SpendBaseline(), Contributors(), {})
    t = T0.timestamp()
    for minute in range(40):  # $5 and 1M tokens a minute: $200 and 40M tokens, paged at the $50 floor
        obs = Observation("request", t + minute * 60, cost=5_000_000, session_id="burn", model="claude-opus-4-1",
                          input_tokens=1_000_000)
        detector.learn_one(obs, ctx)
        detector.score_one(ctx, obs.ts, obs)
    assert detector.sessions["burn"].flagged == 50_000_000 and detector.sessions["burn"].flagged_work == 0
    later = Observation("request", t + 3 * 3600, cost=1, session_id="next", model="gpt-5-mini", input_tokens=10)
    detector.learn_one(later, ctx)
    # learned as $50 of its own calls, 10M tokens, not the 40M it sent
    assert detector.history[0] == 50_000_000 and detector.work_history[0] == 10_000_000
