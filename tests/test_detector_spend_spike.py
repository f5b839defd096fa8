"""spend_spike: a day heading for 3x the 7-day daily mean from more ordinary traffic, paged within the hour."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from decimal import Decimal

import pytest

from detector_kit import T0, event, flat, hourly_traffic, of, office_hours, only, run

CONFIG = only(spend_spike=True)


def sessions_traffic(start, hours, sessions_per_day, *, seed, spike_from=None, spike_factor=1.0, key="k1",
                     dollars=0.5, calls=4, weekend=0.3, noise=0.25):
    """Poisson session starts on an office-shaped day (x ``weekend`` on Saturdays and Sundays), day-to-day
    noise log-normal(``noise``); from ``spike_from`` on, ``spike_factor`` x the session rate. Each session is
    ``calls`` requests a minute apart costing ``dollars`` together."""
    rng = random.Random(seed)
    events = []
    day_factor = 1.0
    for h in range(hours):
        hour = start + timedelta(hours=h)
        if hour.hour == 0 or h == 0:
            day_factor = rng.lognormvariate(0, noise)
        shape = 1.6 if 8 <= hour.hour < 20 else 0.4
        rate = sessions_per_day / 24 * shape * day_factor * (weekend if hour.weekday() >= 5 else 1.0)
        if spike_from is not None and hour >= spike_from:
            rate *= spike_factor
        count = _poisson(rng, rate)
        for _ in range(count):
            begin = hour + timedelta(seconds=rng.uniform(0, 3600))
            session = f"{key}-s{rng.getrandbits(40)}"
            events += [event(begin + timedelta(minutes=i), dollars / calls, key=key, session=session)
                       for i in range(calls)]
    return events


def _poisson(rng, mean):
    count, threshold, product = 0, math.exp(-mean), rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def test_a_rise_of_many_sessions_pages_within_the_hour_and_resolves_once():
    spike_at = T0 + timedelta(days=10, hours=9)  # a Thursday
    events = sessions_traffic(T0, 24 * 12, 200, seed=1, spike_from=spike_at, spike_factor=6,
                              dollars=0.6)  # ~$120 a day, then 6x from 09:00
    events = [e for e in events if e.event_time < spike_at + timedelta(hours=10)]
    alerts = run(events, CONFIG)
    [trigger] = of(alerts, "spend_spike", "trigger")
    assert spike_at <= trigger.fired_at <= spike_at + timedelta(minutes=60), trigger.fired_at - spike_at
    assert trigger.details["trigger"] == "projection" and "is on course for" in trigger.summary
    assert trigger.details["projected_day_usd"] > 3 * trigger.expected
    # the day did end over the line (the page was right), and it resolves once the traffic is back to normal
    [resolve] = of(alerts, "spend_spike", "resolve")
    assert resolve.fired_at > spike_at + timedelta(hours=10)
    assert {a.dedup_key for a in of(alerts, "spend_spike")} == {trigger.dedup_key}


@pytest.mark.parametrize(("sessions_per_day", "within"), [(30, 240), (100, 75), (400, 60), (2000, 30)])
def test_a_3x_day_is_caught_within_about_an_hour_at_any_volume(sessions_per_day, within):
    """The evidence needed is proportional to volume: a key that starts 30 sessions a day (about 2 an hour
    in office hours) needs a few hours of 5x to be told from noise; from 100 a day, about an hour."""
    caught = []
    for seed in range(3):
        spike_at = T0 + timedelta(days=9 + seed, hours=8)  # weekdays
        # 5x the session rate from 08:00: the day ends at about 4x the 7-day mean
        events = sessions_traffic(T0, 24 * 9 + 24 * seed + 16, sessions_per_day, seed=seed, spike_from=spike_at,
                                  spike_factor=5, dollars=100 / sessions_per_day)
        triggers = of(run(events, CONFIG, drain=timedelta(0)), "spend_spike", "trigger")
        assert len(triggers) <= 1
        caught.append((triggers[0].fired_at - spike_at).total_seconds() / 60 if triggers else math.inf)
    assert sorted(caught)[1] <= within, caught  # the median of three seeds
    assert all(minutes >= 0 for minutes in caught)


@pytest.mark.parametrize("sessions_per_day", [4, 30, 400])
def test_ordinary_noise_and_weekends_do_not_page_at_any_volume(sessions_per_day):
    for seed in range(3):
        events = sessions_traffic(T0, 24 * 21, sessions_per_day, seed=100 + seed, dollars=100 / sessions_per_day,
                                  noise=0.35)
        assert not of(run(events, CONFIG), "spend_spike"), seed


def test_one_long_session_is_not_a_spend_spike():
    history = sessions_traffic(T0, 24 * 10, 20, seed=7, dollars=0.2)  # ~$4 a day
    day = T0 + timedelta(days=10, hours=10)
    long_session = [event(day + timedelta(minutes=m), 1.0, session="big-refactor") for m in range(120)]  # $120
    assert not of(run(history + long_session, CONFIG), "spend_spike")


def test_the_24_hour_rule_still_pages_a_spike_the_projection_missed():
    # a key without session ids (each request counts as a session): a steady $48/day, then four hours of
    # 12x the requests late in the day; the 24h sum crosses the line on a request during it
    history = hourly_traffic(T0, 24 * 10, flat(2.0), alias="batch-jobs", team="ml")
    burst_at = T0 + timedelta(days=10, hours=20)
    burst = hourly_traffic(burst_at, 4, flat(24.0), per_hour=72, alias="batch-jobs", team="ml")
    alerts = run(history + burst, CONFIG)
    [trigger] = of(alerts, "spend_spike", "trigger")
    assert burst_at <= trigger.fired_at <= burst_at + timedelta(hours=4)
    assert abs(trigger.expected - 48.0) < 0.01
    assert trigger.labels["key_alias"] == "batch-jobs" and trigger.labels["team"] == "ml"
    assert len(trigger.series) == 24 and any(p.baseline_usd is not None for p in trigger.series)


def test_the_dollar_floor_keeps_cents_quiet_but_not_dollars_on_a_cheap_key():
    # keys without session ids (each request counts as a session), 6 requests an hour; then ten times the
    # requests for 8 hours: a day of about 4x the 7-day mean on both
    def day_of(per_hour_usd, config=CONFIG):
        history = hourly_traffic(T0, 24 * 8 + 6, flat(per_hour_usd))
        burst = hourly_traffic(T0 + timedelta(days=8, hours=6), 8, flat(per_hour_usd * 10), per_hour=60)
        return run(history + burst, config)

    # $0.024 a day -> ~$0.10 (even projected at 10x all day, $0.17 over the line): under the $0.25 floor -- no page
    assert not of(day_of(0.001), "spend_spike")
    # $1.20 a day -> ~$4.80: $1.20 over the line -- a page (the $5 floor of the last release hid it)
    [trigger] = of(day_of(0.05), "spend_spike", "trigger")
    assert trigger.details["line_usd"] == 3.6
    assert not of(day_of(0.05, only({"spend_spike": {"min_excess_usd": 5}}, spend_spike=True)), "spend_spike")


def test_the_floor_is_also_a_share_of_the_keys_own_day():
    """A steady $120-a-day key (requests without session ids: each is a session) whose whole day runs at 3.2x
    its sessions ends less than half a usual day over the line: within a day's variation, no page. At 3.7x, a
    page; and at 3.2x with the share at 0 (only the $0.25 floor), a page."""
    def day_of(requests_per_hour, config=CONFIG):
        history = hourly_traffic(T0, 24 * 8, flat(5.0))
        day = hourly_traffic(T0 + timedelta(days=8), 24, flat(5.0 * requests_per_hour / 6), per_hour=requests_per_hour)
        return of(run(history + day, config), "spend_spike", "trigger")

    assert not day_of(19)
    assert day_of(22)
    assert day_of(19, only({"spend_spike": {"min_excess_share": 0}}, spend_spike=True))


def test_a_sparse_key_pages_on_a_genuine_3x_day():
    """Tens of requests a day (~8 sessions of 4 calls, $16 a day): a day of 5x the sessions from 08:00
    (about 4x the 7-day mean, ~$64) pages within its day on every seed. (Not within a few hours: the day's
    sessions, shrunk by the prior, must make the line plus min_excess_share -- 3.5x -- and with 8 sessions a
    day that takes most of it; two seeds page after 8-10 h, one after 2 h.)"""
    for seed in range(3):
        spike_at = T0 + timedelta(days=9 + seed, hours=8)  # weekdays
        events = sessions_traffic(T0, 24 * 9 + 24 * seed + 24, 8, seed=seed, spike_from=spike_at, spike_factor=5,
                                  dollars=2.0)
        triggers = of(run(events, CONFIG, drain=timedelta(0)), "spend_spike", "trigger")
        assert len(triggers) == 1, seed
        assert spike_at <= triggers[0].fired_at <= spike_at + timedelta(hours=16), triggers[0].fired_at - spike_at


def test_a_sparse_key_is_not_taken_to_be_steadier_than_a_week_can_show():
    """Four sessions a day ($4), a week that happened to be steady, then a day of 14 sessions spread over it (3.5x):
    seven days cannot show a sparse key's day-to-day spread, so it is taken to be at least min_day_spread (0.5,
    log scale) and such a day is not significant. Taken at face value (0) it would page."""
    day = T0 + timedelta(days=9)
    events = sessions_traffic(T0, 24 * 10, 4, seed=2, spike_from=day, spike_factor=4, dollars=1.0, noise=0.0)
    assert len({e.session_id for e in events if e.event_time >= day}) == 14
    assert not of(run(events, CONFIG), "spend_spike")
    assert of(run(events, only({"spend_spike": {"min_day_spread": 0, "min_excess_share": 0}}, spend_spike=True)),
              "spend_spike", "trigger")


def test_a_spike_over_midnight_does_not_raise_its_own_line():
    """Four $1 sessions a day, then a new one every 5 minutes from 22:00 to 02:00: yesterday (a day of 7x in
    dollars and sessions) is a spike, not a usual day, so after midnight the line stays 3 x $4 (the 7-day mean
    with it would be $7.43): one episode, judged against the usual day."""
    events = [event(T0 + timedelta(days=d, hours=h), 1.0, session=f"d{d}h{h}") for d in range(10) for h in (9, 11, 13, 15)]
    spike_at = T0 + timedelta(days=9, hours=22)
    events += [event(spike_at + timedelta(minutes=5 * i), 1.0, session=f"spike{i}") for i in range(48)]
    alerts = of(run(events, CONFIG), "spend_spike")
    [trigger] = [a for a in alerts if a.action.value == "trigger"]
    assert spike_at <= trigger.fired_at < T0 + timedelta(days=10)
    after_midnight = [a for a in alerts if a.action.value == "repeat" and a.fired_at >= T0 + timedelta(days=10)]
    assert after_midnight and all(a.expected == 4.0 for a in after_midnight)


def test_a_sparse_noisy_key_does_not_page():
    """The same sparse key with 50% day-to-day noise (twice the realistic traffic's) and calls of very
    unequal cost: three weeks, no page, though single days reach 3x its 7-day mean in dollars."""
    for seed in range(4):
        rng = random.Random(seed)
        events = sessions_traffic(T0, 24 * 21, 8, seed=200 + seed, dollars=0.25, noise=0.5)
        # each call's cost log-normal (sigma 1)
        events = [e.model_copy(update={"cost_usd": round(e.cost_usd * Decimal(str(rng.lognormvariate(-0.5, 1))), 6)})
                  for e in events]
        assert not of(run(events, CONFIG), "spend_spike"), seed


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


def test_a_snapshot_from_before_the_page_time_loads():
    from spendwatch.detectors.config import BaselineConfig, SpendSpikeConfig
    from spendwatch.detectors.spend_spike import SpendSpike

    spike = SpendSpike(SpendSpikeConfig(), BaselineConfig(), "key", "k1")
    state = spike.__getstate__()
    del state["paged_at"]  # written by the previous release
    restored = SpendSpike.__new__(SpendSpike)
    restored.__setstate__(state)
    assert restored.paged_at == -math.inf


def test_a_key_created_in_the_evening_is_judged_by_the_days_it_has_existed():
    # a user's replacement key created at 18:00 on a Monday: its first day holds a fifth of a usual day's
    # traffic; counted as a whole day it took the mean (and the line) down by a fifth, so a busy day of about
    # 3.2x the key's usual paged on its fourth day. The first day counts for the share of a usual day's spend
    # after its first hour (the evening's fifth), so the mean is over the days the key existed.
    created = T0 + timedelta(hours=18)
    busy = T0 + timedelta(days=4)  # Friday
    def days(spike_factor):
        events = sessions_traffic(created, 24 * 5 - 18, 150, seed=3, spike_from=busy, spike_factor=spike_factor,
                                  noise=0.0)
        return of(run(events, CONFIG), "spend_spike", "trigger")

    assert not days(3.2)
    triggers = days(6.0)  # a genuine spike still pages, against the mean of the days the key existed (~$75)
    assert triggers and busy <= triggers[0].fired_at and triggers[0].expected == pytest.approx(75, rel=0.1)



def test_a_key_first_seen_at_the_start_of_its_usual_day_has_existed_all_of_it():
    # watching begins on a Monday; an office-hours key's first request is at 09:00, as every day: its first
    # day is a whole usual day (nothing of its usual day comes before 09:00), so its fourth day can page
    history = hourly_traffic(T0, 24 * 3, office_hours(10.0))
    spike = hourly_traffic(T0 + timedelta(days=3), 24, office_hours(80.0), per_hour=48)
    triggers = of(run(history + spike, CONFIG), "spend_spike", "trigger")
    assert triggers and triggers[0].fired_at < T0 + timedelta(days=3, hours=17)


def test_a_spike_at_an_hour_the_key_is_usually_idle_is_projected_at_its_rate():
    # a key that starts four $5 sessions a day between 10:00 and 16:00 and none in the evening ($20 a day); on
    # day 9 a script starts a $0.25 session a minute from 19:00 to 23:00 (a day of 4x). The rest of the evening
    # usually brings nothing, so the rate ratio times the usual rest projected nothing and the page waited
    # until the spend itself reached 3.5x (after 3.3 h); projected at the rate it is measured against (an
    # hour at least half the mean hour's), it pages within about the hour.
    events = [event(T0 + timedelta(days=d, hours=10 + 2 * i, minutes=m), 1.0, session=f"d{d}-{i}")
              for d in range(9) for i in range(4) for m in range(5)]
    spike_at = T0 + timedelta(days=9, hours=19)
    events += [event(T0 + timedelta(days=9, hours=10 + 2 * i, minutes=m), 1.0, session=f"d9-{i}")
               for i in range(4) for m in range(5)]
    events += [event(spike_at + timedelta(minutes=m), 0.25, session=f"script-{m}") for m in range(240)]
    [trigger] = of(run(events, CONFIG), "spend_spike", "trigger")
    assert trigger.fired_at - spike_at <= timedelta(minutes=90), trigger.fired_at - spike_at
    assert trigger.details["trigger"] == "projection"


def _agent_day(day, sessions):
    """``sessions`` sessions spread over the day: nine in ten a $0.50 call, one in ten 24 $1 calls (an
    agent key's long tail: its long sessions are 8x its mean session and most of its spend)."""
    events = []
    for i in range(sessions):
        begin = T0 + timedelta(days=day, seconds=i * 86_400 // sessions)
        if i % 10 == 5:
            events += [event(begin + timedelta(minutes=m), 1.0, session=f"d{day}-{i}") for m in range(24)]
        else:
            events.append(event(begin, 0.5, session=f"d{day}-{i}"))
    return events


def test_a_key_whose_usual_days_have_long_sessions_pages_a_day_of_more_of_them():
    # 20 sessions a day ($57): the two long ones pass the big-session cap (5x the mean session), a third of the
    # day is over it. A day of 4.5x the sessions of the same mix is a spend spike; its long sessions' excess
    # is left out only beyond its usual share (before, all of it was, against a mean that kept it: 3.0x)
    history = [e for d in range(8) for e in _agent_day(d, 20)]
    spike = _agent_day(8, 90)
    assert not of(run(history + _agent_day(8, 20), CONFIG), "spend_spike")
    triggers = of(run(history + spike, CONFIG), "spend_spike", "trigger")
    assert triggers and triggers[0].fired_at < T0 + timedelta(days=9)


def test_a_snapshot_from_before_the_hourly_big_session_excess_loads():
    from spendwatch.detectors.config import BaselineConfig, SpendSpikeConfig
    from spendwatch.detectors.spend_spike import SpendSpike

    state = SpendSpike(SpendSpikeConfig(), BaselineConfig(), "key", "k1").__getstate__()
    del state["trimmed_hours"]  # written by the previous release
    restored = SpendSpike.__new__(SpendSpike)
    restored.__setstate__(state)
    assert len(restored.trimmed_hours) == 192 and not any(restored.trimmed_hours)
