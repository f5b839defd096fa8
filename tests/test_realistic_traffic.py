"""The realistic generator: ordinary life as specified, and every label true of the traffic it labels."""

from __future__ import annotations

import gzip
import hashlib
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from spendwatch.schemas.adapters import parse_message
from spendwatch.traffic.realistic import DAY, FAMILIES, Effect, RealisticTraffic


@pytest.fixture(scope="module")
def org() -> RealisticTraffic:
    return RealisticTraffic(days=14, seed=2, keys=40, teams=8)


@pytest.fixture(scope="module")
def calls(org):
    return list(org.calls())


def _day(ts: float) -> int:
    return int(ts // DAY)


def test_same_seed_same_traffic_other_seed_other_traffic():
    def digest(seed: int) -> str:
        lines = RealisticTraffic(days=2, seed=seed, keys=12, teams=3, warmup_days=1,
                                 incidents_per_family=(1, 1)).litellm_lines()
        return hashlib.sha256(b"\n".join(lines)).hexdigest()

    assert digest(5) == digest(5) != digest(6)


def test_every_family_has_several_instances_after_the_warmup(org):
    counts = Counter(label.family for label in org.labels)
    assert set(counts) == set(FAMILIES)
    # 4-8 drawn per family; a cache drop or bloat drawn while its key sent nothing is dropped, not labelled
    least = {"budget_overrun": 1, "cache_hit_drop": 3, "context_bloat": 3}
    assert all(counts[f] >= least.get(f, 4) for f in FAMILIES)
    for label in org.labels:
        assert label.start.timestamp() >= org.warmup_end and label.end > label.start
        assert sum(bool(v) for v in (label.key, label.team, label.session)) == 1


def test_incidents_land_on_keys_of_every_size(org):
    volumes = {k.alias: k.daily_requests for k in org.keys}
    keyed = [volumes[label.key] for label in org.labels if label.key]
    assert min(keyed) < 100 and max(keyed) > 300


def test_key_volumes_are_heavy_tailed(org, calls):
    per_key = Counter(call[1].key_hash for call in calls)
    weekday_rates = sorted(k.daily_requests for k in org.keys)
    assert weekday_rates[0] < 40 and weekday_rates[-1] > 1000
    assert max(per_key.values()) > 20 * min(per_key.values())


def test_sessions_keep_one_model(calls):
    models: dict[str, set[str]] = defaultdict(set)
    for call in calls:
        models[call[2]].add(call[3])
    assert all(len(m) == 1 for m in models.values())
    lengths = Counter(call[2] for call in calls)
    assert max(lengths.values()) >= 100 and sorted(lengths.values())[len(lengths) // 2] < 20


def test_ordinary_failures_and_cache_ratios(org, calls):
    failures = sum(not call[4] for call in calls) / len(calls)
    assert 0.005 < failures < 0.05
    assert all(0.4 <= k.cache_ratio <= 0.8 for k in org.keys)


def test_weekends_are_quiet(org, calls):
    by_day = Counter(_day(call[0]) for call in calls)
    saturday = _day(org.start_ts) + 5  # the run starts on a Monday
    assert by_day[saturday] < 0.7 * by_day[_day(org.start_ts) + 2]


def test_spend_spike_labels_are_true_days_above_3x_the_7_day_average(org, calls):
    spend: dict[tuple[str, int], int] = defaultdict(int)
    for call in calls:
        spend[(call[1].alias, _day(call[0]))] += call[10]
    for label in (lb for lb in org.labels if lb.family == "spend_spike"):
        days = range(_day(label.start.timestamp()), _day(label.end.timestamp()) + 1)
        ratios = [spend[(label.key, d)] / (sum(spend[(label.key, d - i)] for i in range(1, 8)) / 7 or 1) for d in days]
        assert max(ratios) > 3, (label, ratios)


def test_a_rate_effect_starts_and_ends_where_it_is_labelled_not_on_the_hour():
    """A spike labelled from hh:40 raises the traffic from hh:40: before, the whole hour took the rate at its half
    hour, so that spike began at the next hour and one from hh:10 began 10 minutes before its label."""
    org = RealisticTraffic(days=3, seed=4, keys=12, teams=3, warmup_days=1, incidents_per_family=(1, 1))
    key = max((k for k in org.keys if k.active_from == 0.0), key=lambda k: k.daily_requests)
    hour = org.start_ts + 36 * 3600
    start, end = hour + 40 * 60, hour + 2 * 3600 + 10 * 60
    key.effects[:] = [Effect("rate", start, end, 200.0)]
    firsts: dict[str, float] = {}
    for call in org.calls():
        if call[1] is key:
            firsts.setdefault(call[2], call[0])
    def sessions(a: float, b: float) -> int:
        return sum(a <= t < b for t in firsts.values())
    # 40 and 10 minutes at 200x the rate against 20 and 50 minutes at the ordinary rate around them
    assert sessions(start, hour + 3600) > 10 * (sessions(hour, start) + 1)
    assert sessions(hour + 2 * 3600, end) > 10 * (sessions(end, hour + 3 * 3600) + 1)


def test_cache_hit_drop_labels_at_least_halve_the_ratio(org, calls):
    for label in (lb for lb in org.labels if lb.family == "cache_hit_drop"):
        start, end = label.start.timestamp(), label.end.timestamp()
        before = [c for c in calls if c[1].alias == label.key and start - 2 * DAY <= c[0] < start and c[4]]
        during = [c for c in calls if c[1].alias == label.key and start <= c[0] < end and c[4]]
        ratio = lambda cs: sum(c[7] for c in cs) / max(1, sum(c[6] for c in cs))  # noqa: E731
        if len(during) >= 20:
            assert ratio(during) <= 0.55 * ratio(before), label


def test_cache_and_bloat_labels_are_on_keys_that_sent_calls_the_effect_changed(org, calls):
    # an effect drawn while a sparse key sleeps changes nothing: such labels are dropped, not kept as misses
    families = ("cache_hit_drop", "context_bloat")
    kept = [lb for lb in org.labels if lb.family in families]
    dropped = [lb for lb in org.dropped if lb.family in families]
    for label in kept + dropped:
        start, end = label.start.timestamp(), label.end.timestamp()
        affected = sum(1 for c in calls if c[1].alias == label.key and start <= c[0] < end and c[4]
                       and c[2].startswith("t"))
        assert (affected > 0) == (label in kept), label


def test_runaway_loops_call_steadily_within_the_range(org, calls):
    for label in (lb for lb in org.labels if lb.family == "runaway_loop"):
        times = [c[0] for c in calls if c[2] == label.session]
        hours = (label.end - label.start).total_seconds() / 3600
        per_10min = len(times) / (hours * 6)
        assert 3 <= hours <= 30.01 and 1.5 <= per_10min <= 80, (label, per_10min)


def test_budget_overrun_labels_are_the_teams_whose_pace_exceeds_their_budget(org):
    budgets = {b["subject"]: b["quarterly_usd"] for b in org.suggested_config()["detectors"]["budget_pace"]["budgets"]}
    forecasts = org.team_forecasts()
    warm_hour = int((org.warmup_end - org.start_ts) // 3600)
    labelled = {lb.team for lb in org.labels if lb.family == "budget_overrun"}
    assert len(labelled) >= 2 and len(labelled) < len(budgets)
    for team, budget in budgets.items():
        assert (max(forecasts[team][warm_hour:]) > budget) == (team in labelled), team
    for label in (lb for lb in org.labels if lb.family == "budget_overrun"):
        assert forecasts[label.team][-1] > budgets[label.team] or "ordinary variation" in label.detail


def test_litellm_lines_parse_to_the_same_calls(org):
    small = RealisticTraffic(days=1.5, seed=9, keys=12, teams=3, warmup_days=1)
    lines = list(small.litellm_lines())
    events = [parse_message(line)[0] for line in lines[:300]]
    calls = list(small.calls())[:300]
    for event, call in zip(events, calls, strict=True):
        assert event.api_key_hash == call[1].key_hash and event.session_id == call[2] and event.model == call[3]
        assert (event.status.value == "success") == call[4]
        if call[4]:
            assert event.input_tokens == call[6] and event.cache_read_tokens == call[7]
            assert int(event.cost_usd * 10**12) == call[10]


def test_key_replacement_and_new_keys(org, calls):
    first_seen: dict[str, float] = {}
    last_seen: dict[str, float] = {}
    for call in calls:
        first_seen.setdefault(call[1].alias, call[0])
        last_seen[call[1].alias] = call[0]
    replaced = [k for k in org.keys if k.alias.endswith("-v2")]
    assert len(replaced) == 1
    old = next(k for k in org.keys if k.user == replaced[0].user and k.active_until < org.end_ts)
    assert last_seen[old.alias] <= replaced[0].active_from <= first_seen[replaced[0].alias]
    assert sum(first_seen[k.alias] > org.start_ts + DAY for k in org.keys if k.alias in first_seen) >= 3


def test_generate_realistic_writes_events_labels_and_budgets(tmp_path):
    from click.testing import CliRunner

    from spendwatch.cli import cli
    from spendwatch.config import load_settings
    from spendwatch.detectors.evaluation import read_labels

    events, labels, config = tmp_path / "events.jsonl.gz", tmp_path / "labels.json", tmp_path / "budgets.yaml"
    result = CliRunner().invoke(cli, ["generate", "--realistic", "--days", "1.5", "--warmup-days", "1", "--keys", "8",
                                      "--teams", "2", "--output", str(events), "--labels-out", str(labels),
                                      "--config-out", str(config)])
    assert result.exit_code == 0, result.output
    assert "session_burn" in {label.family for label in read_labels(labels)}
    assert len(load_settings(config).detectors.budget_pace.budgets) == 2
    assert parse_message(gzip.open(events).readline())[0].gateway == "litellm"
    refused = CliRunner().invoke(cli, ["generate", "--labels-out", str(labels), "--output", str(tmp_path / "x")])
    assert refused.exit_code != 0 and "--realistic" in refused.output


def test_module_examples_run():
    import doctest

    import spendwatch.traffic.realistic as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed
