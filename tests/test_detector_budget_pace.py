"""budget_pace: 60% of the quarter before week 6, and forecast overruns; on pace stays quiet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detector_kit import flat, hourly_traffic, of, only, run

from spendwatch.detectors.engine import Engine

Q4 = datetime(2026, 10, 1, tzinfo=UTC)


def budget_config(*, also: tuple[str, ...] = (), **budget):
    budget = {"scope": "team", "subject": "ml", "owner": "ana@example.com", **budget}
    return only({"budget_pace": {"budgets": [budget]}}, budget_pace=True, **dict.fromkeys(also, True))


def team_traffic(start, days, dollars_per_day, **fields):
    return hourly_traffic(start, 24 * days, flat(dollars_per_day / 24), per_hour=2, team="ml", **fields)


def test_routes_only_budgeted_teams():
    engine = Engine(budget_config(quarterly_usd=1000, also=("spend_spike",)))
    [ml, other] = team_traffic(Q4, 1, 48)[0], team_traffic(Q4, 1, 48, key="k2")[0].model_copy(update={"team": "web"})
    assert engine.routes(ml) == ["key:k1", "team:ml"]
    assert engine.routes(other) == ["key:k2"]
    assert Engine(budget_config(quarterly_usd=1000)).routes(other) == []  # nothing runs on keys
    assert "budget_pace" in engine.new_state("team:ml").detectors
    assert "budget_pace" not in engine.new_state("key:k1").detectors


def test_sixty_percent_before_week_six_pages_on_the_crossing_request():
    # $10,000 quarter, $600/day from October 1st: $6,000 is crossed on day 10 (week 2)
    config = budget_config(quarterly_usd=10_000)
    alerts = run(team_traffic(Q4, 14, 600), config)
    [early] = [a for a in of(alerts, "budget_pace", "trigger") if a.dedup_key.startswith(
        "budget_pace:team:ml:quarter:2026Q4:early")]
    assert early.scope == "team" and early.subject == "ml"
    assert Q4 + timedelta(days=9, hours=23) <= early.fired_at <= Q4 + timedelta(days=10, hours=1)
    assert early.observed >= 6000 > early.observed - 13  # the crossing request is at most ~$12.50
    assert early.labels["owner"] == "ana@example.com" and early.labels["team"] == "ml"
    assert "$10,000.00 2026Q4 budget" in early.summary and "week 2 of 13" in early.summary
    assert early.root_cause and early.root_cause[0].kind == "model"


def test_forecast_overrun_pages_after_the_first_week():
    # $500/day against $30,000 for the quarter: on pace for ~$46k; 60% would be crossed only in week 6
    config = budget_config(quarterly_usd=30_000)
    alerts = run(team_traffic(Q4, 12, 500), config)
    triggers = of(alerts, "budget_pace", "trigger")
    assert [a.dedup_key.split(":")[5] for a in triggers] == ["forecast"]
    assert Q4 + timedelta(days=7) <= triggers[0].fired_at <= Q4 + timedelta(days=7, hours=1)
    assert triggers[0].observed > 30_000 and triggers[0].expected == 30_000
    assert "on pace to end at" in triggers[0].summary


def test_monthly_budget_forecast_and_exceeded():
    config = budget_config(monthly_usd=5_000)
    alerts = run(team_traffic(Q4, 20, 400), config)  # $400/day: $12k month
    triggers = of(alerts, "budget_pace", "trigger")
    assert [a.dedup_key.split(":")[4] for a in triggers] == ["2026-10"]
    repeats = of(alerts, "budget_pace", "repeat")
    assert any(a.severity.value == "error" and "already over" in a.summary for a in repeats)


def test_on_pace_and_late_crossing_do_not_page():
    # $100/day against $10,000: ends the quarter at ~$9,200 -- never pages
    assert not run(team_traffic(Q4, 40, 100), budget_config(quarterly_usd=10_000))
    # 60% crossed in week 8 is not an "early" page (the forecast is under budget too)
    late = team_traffic(Q4, 60, 100)
    alerts = run(late, budget_config(quarterly_usd=9_500))
    assert not [a for a in alerts if ":early:" in a.dedup_key]


def test_a_team_page_names_the_team_not_the_key_that_tipped_it():
    # The team's state sees requests from many keys; its page must not carry the identity of
    # whichever key's request happened to cross the line (routing would page that key's owner).
    config = budget_config(quarterly_usd=10_000)
    alerts = run(team_traffic(Q4, 14, 600, key="k-tipping", alias="tipping-agent", user="dev@example.com"), config)
    [early, *_] = of(alerts, "budget_pace", "trigger")
    assert early.labels["team"] == "ml"
    assert not {"key_hash", "key_alias", "user"} & set(early.labels)


def _day_pattern(start, daily):
    """Team traffic with one dollar amount per day (``daily`` lists them)."""
    events = []
    for d, dollars in enumerate(daily):
        events += team_traffic(start + timedelta(days=d), 1, dollars)
    return events


def test_a_single_heavy_day_is_not_read_as_the_pace():
    # $100/day against a budget with 2.5x headroom ($23,000 for the quarter's 92 days); one day at $900.
    # As the pace that day ends the quarter near $70k; as one day of seven the week's pace is $214/day.
    daily = [100] * 14 + [900] + [100] * 10
    alerts = run(_day_pattern(Q4, daily), budget_config(quarterly_usd=23_000))
    assert not of(alerts, "budget_pace", "trigger")


def test_two_heavy_days_in_a_steady_week_do_not_page_either():
    daily = [100] * 14 + [600, 600] + [100] * 10
    assert not of(run(_day_pattern(Q4, daily), budget_config(quarterly_usd=23_000)), "budget_pace", "trigger")


def test_a_real_overrun_pages_while_it_builds_up():
    # the same team moves to $500/day for good on day 14: it pages once about three of its days are in the
    # week's pace (with 2.5x headroom the week must pass ~$270/day), not after a week of it
    daily = [100] * 14 + [500] * 8
    alerts = run(_day_pattern(Q4, daily), budget_config(quarterly_usd=23_000))
    [trigger] = of(alerts, "budget_pace", "trigger")
    assert ":forecast" in trigger.dedup_key
    assert Q4 + timedelta(days=14) < trigger.fired_at <= Q4 + timedelta(days=17, hours=3)
    # a bigger change shows sooner: ten times pages within two days
    daily = [100] * 14 + [1000] * 8
    [trigger] = of(run(_day_pattern(Q4, daily), budget_config(quarterly_usd=23_000)), "budget_pace", "trigger")
    assert trigger.fired_at <= Q4 + timedelta(days=16)
    assert "over the last 7 days" in trigger.summary


def test_the_rest_of_a_month_is_charged_at_the_weekly_shape():
    # Busy weekdays, idle weekends: the month's last days fall on a weekend (2026-10-31 is a Saturday), so
    # the forecast on Friday 30th charges ~nothing for them; a flat pace would add two weekdays' spend.
    def weekdays_only(hour):
        return 0.0 if hour.weekday() >= 5 else 400 / 24
    events = hourly_traffic(Q4, 24 * 30, weekdays_only, per_hour=2, team="ml")
    spent = sum(float(e.cost_usd) for e in events)  # 22 weekdays x $400 = $8,800 by Friday night
    alerts = run(events, budget_config(monthly_usd=round(spent + 100)), drain=timedelta(hours=0))
    assert not of(alerts, "budget_pace", "trigger")
