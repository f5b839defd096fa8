"""The traffic generator: deterministic, canonical, priced by genai-prices, realistic, incidents visible in the data."""

from __future__ import annotations

import gzip
import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from click.testing import CliRunner

from spendwatch.schemas.adapters import dumps, parse_message
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.outcome import OutcomeEvent
from spendwatch.schemas.pricing import compute_cost, price_tier
from spendwatch.traffic import INCIDENTS, NEGATIVES, GroundTruth, Traffic, generate, ground_truth, iter_json_lines
from spendwatch.traffic.cli import generate as generate_command

SMALL = {"days": 7, "seed": 5, "keys": 24, "teams": 4}


@pytest.fixture(scope="module")
def week() -> list[GatewayEvent | OutcomeEvent]:
    return list(generate(**SMALL))


@pytest.fixture(scope="module")
def truth() -> dict[str, GroundTruth]:
    return {t.kind: t for t in ground_truth(**SMALL)}


def _requests(records, subject=None):
    return [r for r in records if isinstance(r, GatewayEvent) and (subject is None or r.api_key_hash == subject)]


def _spend(events) -> Decimal:
    return sum((e.cost_usd for e in events), Decimal(0))


def test_same_seed_same_bytes_other_seed_other_traffic():
    one = list(itertools.islice(iter_json_lines(days=1, seed=9, keys=20, teams=3), 3000))
    again = list(itertools.islice(iter_json_lines(days=1, seed=9, keys=20, teams=3), 3000))
    other = list(itertools.islice(iter_json_lines(days=1, seed=10, keys=20, teams=3), 3000))
    assert one == again
    assert one != other


def test_records_are_in_event_time_order_and_inside_the_run(week):
    times = [r.event_time for r in week]
    assert times == sorted(times)
    start = datetime(2026, 11, 2, tzinfo=UTC)
    assert start <= times[0] and times[-1] < start + timedelta(days=7)
    assert len({r.event_id if isinstance(r, GatewayEvent) else r.outcome_id for r in week}) == len(week)


def test_json_lines_are_canonical_and_parse_back_to_the_same_records(week):
    lines = list(itertools.islice(iter_json_lines(**SMALL), 4000))
    parsed = [rec for line in lines for rec in parse_message(line)]
    assert parsed == week[:4000]
    assert [dumps(r) for r in week[:200]] == [dumps(r) for r in parsed[:200]]
    assert all(GatewayEvent.model_validate(r.model_dump()) == r for r in _requests(week[:2000]))


def test_costs_are_genai_prices_exactly(week):
    checked = 0
    for event in _requests(week)[::97]:
        expected, _ = compute_cost(event.model, event.provider, input_tokens=event.input_tokens,
                                   cache_read_tokens=event.cache_read_tokens,
                                   cache_write_tokens=event.cache_write_tokens, output_tokens=event.output_tokens,
                                   at=event.event_time)
        assert event.cost_usd == (expected if event.status == "success" else Decimal(0)), event
        checked += 1
    assert checked > 200


def test_organisation_shape(week):
    requests = _requests(week)
    assert len({e.team for e in requests}) == 4 and len({e.org for e in requests}) == 2
    assert len({e.api_key_hash for e in requests}) == 24
    assert {e.api_key_hash: e.api_key_alias for e in requests}.values().__len__() == 24
    tiers = Counter(price_tier(e.model, e.provider) for e in requests)
    assert {"frontier", "standard", "economy"} <= set(tiers)
    sessions = Counter(e.session_id for e in requests)
    assert max(sessions.values()) > 50 and len(sessions) > 1000
    failures = [e for e in requests if e.status == "failure"]
    assert 0.003 < len(failures) / len(requests) < 0.2 and all(f.error_type for f in failures)
    input_tokens = sum(e.input_tokens for e in requests)
    assert 0.3 < sum(e.cache_read_tokens for e in requests) / input_tokens < 0.9
    outcomes = [r for r in week if isinstance(r, OutcomeEvent)]
    assert Counter(o.kind for o in outcomes).keys() == {"task_accepted", "pr_merged"}
    assert {o.session_id for o in outcomes} <= set(sessions)


def test_weekday_weekend_and_hour_of_day_seasonality(week, truth):
    requests = _requests(week, truth["seasonality"].subject)
    by_day = Counter(e.event_time.weekday() for e in requests)
    assert min(by_day[d] for d in range(5)) > 8 * max(by_day[5], by_day[6], 1)
    everyone = _requests(week)
    by_hour = Counter(e.event_time.hour for e in everyone if e.event_time.weekday() < 5)
    assert by_hour[14] > 4 * by_hour[3]


def test_new_sparse_and_growing_keys(week, truth):
    new = truth["new_key"]
    new_events = _requests(week, new.subject)
    assert new_events and min(e.event_time for e in new_events) >= new.start
    sparse = _requests(week, truth["sparse_key"].subject)
    days_with_calls = {e.event_time.date() for e in sparse}
    assert len(sparse) < 60 and len(days_with_calls) < 7
    growth = _requests(week, truth["growth_ramp"].subject)
    first_week_half = _spend(e for e in growth if e.event_time.day < 5)
    second_half = _spend(e for e in growth if e.event_time.day >= 5 and e.event_time.weekday() < 5)
    assert second_half > first_week_half * Decimal("0.6")  # 2 weekdays late in the ramp vs 3 early ones


def test_ground_truth_labels_every_incident_and_negative(truth):
    assert set(truth) == set(INCIDENTS) | set(NEGATIVES)
    for kind, (detector, bound) in INCIDENTS.items():
        t = truth[kind]
        assert not t.negative and t.detector == detector and t.ttd_bound_minutes == bound
        assert datetime(2026, 11, 2, tzinfo=UTC) <= t.start < t.end <= datetime(2026, 11, 9, tzinfo=UTC)
    assert truth["budget_overrun"].scope == "team"
    assert all(truth[k].negative and truth[k].detector is None for k in NEGATIVES)
    assert GroundTruth.from_dict(orjson.loads(orjson.dumps(truth["runaway_loop"].to_dict()))) == truth["runaway_loop"]


def test_incidents_are_visible_in_the_data(week, truth):
    def during(kind, *, before=False):
        t = truth[kind]
        events = _requests(week, t.subject)
        if before:
            return [e for e in events if e.event_time < t.start]
        return [e for e in events if t.start <= e.event_time < t.end]

    runaway = during("runaway_loop")
    assert _spend(runaway) > 5000  # thousands of dollars over the weekend
    assert Counter(e.model for e in runaway).most_common(1)[0][0] == "claude-opus-4-1"
    burn = [e for e in during("session_burn") if e.session_id == truth["session_burn"].session_id]
    assert _spend(burn) > 100 and burn[-1].event_time - burn[0].event_time < timedelta(hours=1)
    storm = during("error_storm")
    assert sum(e.status == "failure" for e in storm) / len(storm) > 0.8 and len(storm) > 1000
    drift = during("model_mix_drift")
    assert Counter(e.model for e in drift)["claude-opus-4-1"] / len(drift) > 0.6
    assert all(e.model != "claude-opus-4-1" for e in during("model_mix_drift", before=True))
    def cache_ratio(events):
        events = [e for e in events if e.status == "success"]
        return sum(e.cache_read_tokens for e in events) / sum(e.input_tokens for e in events)
    assert cache_ratio(during("cache_hit_drop", before=True)) > 0.6 > 0.05 > cache_ratio(during("cache_hit_drop"))
    spike = truth["spend_spike"]
    day_before = [e for e in _requests(week, spike.subject)
                  if spike.start - timedelta(days=1) <= e.event_time < spike.start]
    assert _spend(during("spend_spike")) > 3 * _spend(day_before)


def test_efficiency_decay_raises_cost_per_outcome_but_not_outcomes(week, truth):
    t = truth["efficiency_decay"]
    spend, outcomes = defaultdict(Decimal), Counter()
    for r in week:
        if r.api_key_hash != t.subject or r.event_time.weekday() >= 5:
            continue
        late = r.event_time >= t.start + timedelta(days=1)
        if isinstance(r, OutcomeEvent):
            outcomes[late] += r.kind == "task_accepted"
        elif r.event_time < t.start or late:
            spend[late] += r.cost_usd
    early_days, late_days = 2, 2  # Mon-Tue before, Thu-Fri after the ramp
    assert outcomes[True] / late_days < 1.5 * outcomes[False] / early_days
    assert (spend[True] / outcomes[True]) > 2 * (spend[False] / outcomes[False])


def test_incidents_only_change_their_own_keys():
    quiet = Traffic(days=2, seed=3, keys=20, teams=3, incidents="none")
    loud = Traffic(days=2, seed=3, keys=20, teams=3, incidents="all")
    special = {k.key_hash for k in loud.keys if k.role.startswith("incident:")} | {
        k.key_hash for k in loud.keys if k.team == loud.budget_team}
    def background(traffic):
        return [(r.ts, r.key.key_hash, r.cost_pico if hasattr(r, "cost_pico") else r.kind)
                for r in traffic.records() if r.key.key_hash not in special]
    assert background(quiet) == background(loud)


def test_cli_writes_gzip_jsonl_and_truth(tmp_path):
    out, truth_path = tmp_path / "events.jsonl.gz", tmp_path / "truth.json"
    result = CliRunner().invoke(generate_command, ["--days", "1", "--seed", "2", "--keys", "20", "--teams", "3",
                                                   "--incidents", "none", "--output", str(out),
                                                   "--truth-out", str(truth_path)])
    assert result.exit_code == 0, result.output
    lines = gzip.decompress(out.read_bytes()).splitlines()
    assert lines == list(iter_json_lines(days=1, seed=2, keys=20, teams=3, incidents="none"))
    truths = orjson.loads(truth_path.read_bytes())
    assert {t["kind"] for t in truths} <= set(NEGATIVES) and all(t["negative"] for t in truths)
    assert "wrote" in result.output


def test_cli_rejects_unknown_incident_kinds(tmp_path):
    result = CliRunner().invoke(generate_command, ["--days", "1", "--incidents", "meteor_strike",
                                                   "--output", str(tmp_path / "x.jsonl")])
    assert result.exit_code != 0 and "meteor_strike" in result.output


def test_demo_config_is_valid_and_budgets_every_default_team():
    from spendwatch.config import load_settings
    from spendwatch.traffic import DEMO_CONFIG
    from spendwatch.traffic.population import teams_of

    settings = load_settings(DEMO_CONFIG)
    budgets = {b.subject: b for b in settings.detectors.budget_pace.budgets}
    assert set(budgets) == {team for team, _, _ in teams_of(6)}
    assert all(b.scope == "team" and b.quarterly_usd and b.owner for b in budgets.values())
