"""Routing, grouping, silences, inhibition and the repeat/resolve decisions, without Kafka or HTTP."""

from __future__ import annotations

import io
import pytest
from paging_fakes import make_alert
from pydantic import ValidationError

from spendwatch.schemas.alert import Action
from spendwatch.sinks.paging.config import ConsoleReceiverConfig, PagingConfig
from spendwatch.sinks.paging.console import ConsoleIntegration
from spendwatch.sinks.paging.grouping import Dispatcher, IntegrationSpec
from spendwatch.sinks.paging.matchers import Matcher, alert_labels
from spendwatch.sinks.paging.service import PagingSetupError, build_integrations


def config(**paging) -> PagingConfig:
    base = {"route": {"receiver": "r", "group_by": ["team"], "group_wait": "30s", "group_interval": "5m", "repeat_interval": "1h"},
            "receivers": [{"name": "r"}, {"name": "payments"}]}
    base.update(paging)
    return PagingConfig.model_validate(base)


def dispatcher(cfg: PagingConfig) -> Dispatcher:
    return Dispatcher(cfg, {r.name: [IntegrationSpec(f"{r.name}/x/0", r.name)] for r in cfg.receivers})


def test_matchers_parse_and_reject():
    assert Matcher.parse('severity=~"critical|error"').matches({"severity": "error"})
    assert Matcher.parse("team!=payments").matches({"team": "search"})
    assert Matcher.parse('user!~"bot-.*"').matches({"user": "alice"})
    for bad in ("team", 'team=~"("', "1team=x"):
        with pytest.raises(ValueError):
            Matcher.parse(bad)


def test_alert_labels_expose_fields_and_scope():
    labels = alert_labels(make_alert(scope="team", subject="search", team="search"))
    assert labels["scope"] == "team" and labels["team"] == "search" and labels["alertname"] == "spend_spike"


def test_config_errors_name_the_problem():
    with pytest.raises(ValidationError, match="undefined receivers"):
        config(route={"receiver": "r", "routes": [{"receiver": "nobody", "matchers": ['team="a"']}]})
    with pytest.raises(ValidationError, match="invalid matcher"):
        config(silences=[{"matchers": ["team"], "ends_at": "2030-01-01T00:00:00Z", "comment": "x"}])
    with pytest.raises(ValidationError, match="ends_at must be after"):
        config(silences=[{"matchers": ['team="a"'], "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z", "comment": "x"}])
    with pytest.raises(ValidationError, match="exactly one of"):
        config(receivers=[{"name": "r", "slack": [{"channel": "C1"}]}])


def test_routes_pick_the_owner_and_inherit_timing():
    d = dispatcher(config(route={"receiver": "r", "group_by": ["team"], "group_wait": "30s",
                                 "routes": [{"matchers": ['team="payments"'], "receiver": "payments", "group_wait": "5s"}]}))
    d.ingest(make_alert("a", team="payments"), 1, now=0.0)
    d.ingest(make_alert("b", team="search"), 2, now=0.0)
    assert d.flush_due(now=4.9).notifications == []
    early = d.flush_due(now=5.0).notifications
    assert [n.receiver for n in early] == ["payments"]
    late = d.flush_due(now=30.0)
    assert [n.receiver for n in late.notifications] == ["r"] and late.done_refs == [2]


def test_group_wait_batches_one_team_into_one_notification():
    d = dispatcher(config())
    for i in range(3):
        d.ingest(make_alert(f"k{i}", subject=f"k{i}"), i, now=float(i))
    (n,) = d.flush_due(now=30.0).notifications
    assert sorted(a.dedup_key for a in n.firing) == ["k0", "k1", "k2"]
    assert n.incident_key.startswith("spendwatch-") and n.group_labels == {"team": "payments"}
    # a fourth key joins after the first notification: it waits group_interval, then one update
    d.ingest(make_alert("k3", subject="k3", minute=1), 3, now=40.0)
    assert d.flush_due(now=329.0).notifications == []
    (update,) = d.flush_due(now=330.0).notifications
    assert update.new_keys == {"k3"} and len(update.firing) == 4 and update.incident_key == n.incident_key


def test_repeats_respect_repeat_interval_and_resolve_only_what_was_paged():
    d = dispatcher(config(route={"receiver": "r", "group_by": ["..."], "group_wait": "0s", "group_interval": "0s", "repeat_interval": "1h"}))
    seen = []
    for i, alert in enumerate([
        make_alert("k1"), make_alert("k1", action="repeat", minute=30), make_alert("k1", action="repeat", minute=61),
        make_alert("k1", action="resolve", minute=70), make_alert("k2", action="resolve", minute=70),
    ]):
        d.ingest(alert, i, now=float(i))
        seen += [(n.group_labels["dedup_key"], dict(n.announced)) for n in d.flush_due(now=float(i)).notifications]
    assert seen == [("k1", {"k1": Action.trigger}), ("k1", {"k1": Action.repeat}), ("k1", {"k1": Action.resolve})]


def test_replayed_alerts_are_not_announced_twice():
    cfg = config(route={"receiver": "r", "group_by": ["..."], "group_wait": "0s", "group_interval": "0s"})
    first = dispatcher(cfg)
    first.ingest(make_alert("k1"), 0, now=0.0)
    result = first.flush_due(now=0.0)
    assert len(result.notifications) == 1
    restarted = dispatcher(cfg)
    restarted.restore(first.firing.values(), result.paged)
    restarted.ingest(make_alert("k1"), 0, now=0.0)  # the same alert, consumed again
    assert restarted.flush_due(now=0.0).notifications == []
    restarted.ingest(make_alert("k1", action="resolve", minute=5), 1, now=1.0)
    (n,) = restarted.flush_due(now=1.0).notifications
    assert n.announced == {"k1": Action.resolve}


def test_silence_mutes_within_its_window_by_event_time():
    cfg = config(route={"receiver": "r", "group_by": ["..."], "group_wait": "0s", "group_interval": "0s", "repeat_interval": "1h"},
                 silences=[{"matchers": ['team="batch"'], "starts_at": "2026-11-20T13:00:00Z", "ends_at": "2026-11-20T15:00:00Z",
                            "comment": "backfill"}])
    d = dispatcher(cfg)
    d.ingest(make_alert("b1", team="batch"), 0, now=0.0)                                  # 14:00: silenced
    muted = d.flush_due(now=0.0)
    assert muted.notifications == [] and muted.done_refs == [0] and "backfill" in muted.muted[0][1]
    d.ingest(make_alert("b1", team="batch", action="repeat", minute=70), 1, now=1.0)      # 15:10: silence over
    (n,) = d.flush_due(now=1.0).notifications
    assert n.announced == {"b1": Action.trigger}  # first page at this receiver, so a trigger


def test_team_page_inhibits_its_keys_but_not_other_teams():
    d = dispatcher(config(route={"receiver": "r", "group_by": ["..."], "group_wait": "0s", "group_interval": "0s"}))
    d.ingest(make_alert("team:search", scope="team", subject="search", team="search"), 0, now=0.0)
    d.ingest(make_alert("key:s1", subject="s1", team="search"), 1, now=0.0)
    d.ingest(make_alert("key:p1", subject="p1", team="payments"), 2, now=0.0)
    result = d.flush_due(now=0.0)
    assert sorted(n.group_labels["dedup_key"] for n in result.notifications) == ["key:p1", "team:search"]
    assert sorted(result.done_refs) == [0, 1, 2]
    # the team page resolves: the key's next repeat is paged
    d.ingest(make_alert("team:search", scope="team", subject="search", team="search", action="resolve", minute=10), 3, now=1.0)
    d.ingest(make_alert("key:s1", subject="s1", team="search", action="repeat", minute=11), 4, now=1.0)
    announced = {k: v for n in d.flush_due(now=1.0).notifications for k, v in n.announced.items()}
    assert announced == {"team:search": Action.resolve, "key:s1": Action.trigger}


def test_severity_mapping_per_detector():
    d = dispatcher(config(severity={"spend_spike": "critical"}, route={"receiver": "r", "group_wait": "0s"}))
    d.ingest(make_alert(severity="warning"), 0, now=0.0)
    (n,) = d.flush_due(now=0.0).notifications
    assert n.top_severity.value == "critical"


def test_default_config_pages_slack_and_pagerduty_only_when_their_env_is_set(monkeypatch):
    for var in ("SPENDWATCH_PAGERDUTY_ROUTING_KEY", "SPENDWATCH_SLACK_BOT_TOKEN", "SPENDWATCH_SLACK_CHANNEL", "SPENDWATCH_SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(var, raising=False)
    assert [i.spec.id for i in build_integrations(PagingConfig())["default"]] == ["default/console/0"]
    monkeypatch.setenv("SPENDWATCH_PAGERDUTY_ROUTING_KEY", "x" * 32)
    monkeypatch.setenv("SPENDWATCH_SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SPENDWATCH_SLACK_CHANNEL", "C0SPEND01")
    ids = [i.spec.id for i in build_integrations(PagingConfig())["default"]]
    assert ids == ["default/pagerduty/0", "default/slack/0", "default/console/0"]
    explicit = config(receivers=[{"name": "r", "pagerduty": [{"routing_key_env": "NOT_SET_ANYWHERE"}]}])
    with pytest.raises(PagingSetupError, match="NOT_SET_ANYWHERE"):
        build_integrations(explicit)


async def test_console_prints_one_line_plus_details_and_writes_jsonl_once(tmp_path):
    d = dispatcher(config(route={"receiver": "r", "group_wait": "0s"}))
    d.ingest(make_alert(), 0, now=0.0)
    (n,) = d.flush_due(now=0.0).notifications
    out = io.StringIO()
    console = ConsoleIntegration(IntegrationSpec("r/console/0", "r"), ConsoleReceiverConfig(path=tmp_path / "p.jsonl"), stream=out)
    await console.deliver(n, None, recovering=False)
    await console.deliver(n, None, recovering=True)  # after a crash: already in the file
    first, second = out.getvalue().splitlines()[:2]
    assert first.startswith("[ERROR] PAGE") and "spent $812" in first
    assert "who: key k1-alias (k1), team payments" in second and "$95.00 expected" in second
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 1



def test_route_test_option_shows_receiver_group_and_silence(tmp_path):
    from click.testing import CliRunner

    from spendwatch.sinks.paging.service import pager

    path = tmp_path / "sw.yaml"
    path.write_text("""
paging:
  route: {receiver: ops, group_by: [team], routes: [{matchers: ['team="payments"'], receiver: payments}]}
  receivers: [{name: ops, console: [{}]}, {name: payments, pagerduty: [{routing_key_env: UNSET_IS_FINE_HERE}]}]
  silences: [{matchers: ['scope="key"'], ends_at: 2030-01-01T00:00:00Z, comment: load test}]
""")
    out = CliRunner().invoke(pager, ["--config", str(path), "--route-test", "team=payments scope=key"])
    assert out.exit_code == 0, out.output
    assert "receiver payments (pagerduty x1)" in out.output and "{'team': 'payments'}" in out.output
    assert "load test" in out.output


class _RecordingLog:
    def __init__(self):
        self.commits = []

    async def commit(self, records, offsets=None, dead_letters=()):
        self.commits.append((list(records), offsets, list(dead_letters)))


async def test_worker_retries_unexpected_errors_and_records_delivery():
    from spendwatch.sinks.paging.config import RetryConfig
    from spendwatch.sinks.paging.delivery import DeliveryWorker

    d = dispatcher(config(route={"receiver": "r", "group_wait": "0s"}))
    d.ingest(make_alert(), 0, now=0.0)
    (n,) = d.flush_due(now=0.0).notifications

    class Flaky:
        spec, kind, calls = IntegrationSpec("r/x/0", "r"), "slack", []

        async def deliver(self, n, root, recovering):
            self.calls.append(recovering)
            if len(self.calls) == 1:
                raise KeyError("ts")  # a bug or an odd response: retried, never dropped
            return {"channel": "C1", "ts": "1.0"}

    log, roots = _RecordingLog(), {}
    worker = DeliveryWorker(Flaky(), log, roots, RetryConfig(initial_backoff="1ms", max_backoff="2ms"))
    await worker.deliver_one(n, recovering=False)
    assert Flaky.calls == [False, True]  # the retry looks before it posts again
    (records, _, dead), = log.commits
    assert dead == [] and records[0] == (f"n|r/x/0|{n.id}", None) and records[1][1]["ts"] == "1.0"
    assert roots[("r/x/0", n.group_key)] == {"channel": "C1", "ts": "1.0"}


async def test_old_resolved_episodes_are_forgotten_but_open_ones_kept():
    from datetime import UTC, datetime, timedelta

    from spendwatch.schemas.alert import Action
    from spendwatch.sinks.paging.delivery import LogState
    from spendwatch.sinks.paging.grouping import Paged
    from spendwatch.sinks.paging.service import PagerService
    from spendwatch.streams.config import TopicsConfig

    now = datetime.now(UTC)
    state = LogState(paged={("i", "old"): Paged(Action.resolve, now - timedelta(days=30)),
                            ("i", "open"): Paged(Action.trigger, now - timedelta(days=30)),
                            ("i", "recent"): Paged(Action.resolve, now - timedelta(days=1))})
    log = _RecordingLog()
    await PagerService("unused:9092", TopicsConfig(), PagingConfig())._forget_old_episodes(state, log)
    assert sorted(k for _, k in state.paged) == ["open", "recent"]
    assert log.commits[0][0] == [("p|i|old", None)]


def test_trigger_and_resolve_in_one_window_is_paged_as_fired_and_cleared():
    from spendwatch.sinks.paging.console import render_text
    from spendwatch.sinks.paging.pagerduty import events_for
    from spendwatch.sinks.paging.slack import blocks, fallback_text

    cfg = config(route={"receiver": "r", "group_by": ["..."], "group_wait": "30s", "group_interval": "5m"})
    d = dispatcher(cfg)
    d.ingest(make_alert("k1", detector="session_burn"), 0, now=0.0)
    d.ingest(make_alert("k1", detector="session_burn", action="repeat", minute=4), 1, now=1.0)
    d.ingest(make_alert("k1", detector="session_burn", action="resolve", minute=9), 2, now=2.0)
    result = d.flush_due(now=30.0)
    (n,) = result.notifications
    assert n.fired_and_cleared and n.announced == {"k1": Action.resolve} and n.new_keys == {"k1"}
    assert [a.action for a in n.cleared] == [Action.trigger] and [a.action for a in n.resolved] == [Action.resolve]
    assert sorted(result.done_refs) == [0, 1, 2]
    assert [e["event_action"] for e in events_for(n, "R" * 32, cfg)] == ["trigger", "resolve"]
    assert fallback_text(n).startswith("[error] Fired and cleared:") and "Fired and cleared" in blocks(n)[0]["text"]["text"]
    assert render_text(n).split()[1] == "PAGE" and "fired and cleared" in render_text(n)

    # consumed again after a restart: the delivery log says it was told, so nothing is sent twice
    restarted = dispatcher(cfg)
    restarted.restore([], result.paged)
    for i, action in enumerate(["trigger", "resolve"]):
        restarted.ingest(make_alert("k1", detector="session_burn", action=action, minute=9 * i), i, now=0.0)
    assert restarted.flush_due(now=30.0).notifications == []


def test_fired_and_cleared_without_send_resolved_is_a_trigger_only():
    from spendwatch.sinks.paging.pagerduty import events_for

    cfg = config(route={"receiver": "r", "group_by": ["..."], "group_wait": "0s"})
    d = Dispatcher(cfg, {"r": [IntegrationSpec("r/x/0", "r", send_resolved=False)]})
    d.ingest(make_alert("k1"), 0, now=0.0)
    d.ingest(make_alert("k1", action="resolve", minute=5), 1, now=0.0)
    (n,) = d.flush_due(now=0.0).notifications
    assert n.announced == {"k1": Action.trigger} and n.resolved == []
    assert [e["event_action"] for e in events_for(n, "R" * 32, cfg)] == ["trigger"]


def test_a_silenced_episode_that_fired_and_cleared_stays_silent():
    cfg = config(route={"receiver": "r", "group_by": ["..."], "group_wait": "0s"},
                 silences=[{"matchers": ['team="batch"'], "starts_at": "2026-11-20T13:00:00Z", "ends_at": "2026-11-20T15:00:00Z",
                            "comment": "backfill"}])
    d = dispatcher(cfg)
    d.ingest(make_alert("b1", team="batch"), 0, now=0.0)
    d.ingest(make_alert("b1", team="batch", action="resolve", minute=5), 1, now=0.0)
    result = d.flush_due(now=0.0)
    assert result.notifications == [] and sorted(result.done_refs) == [0, 1]


def test_inhibition_never_mutes_a_more_severe_page():
    d = dispatcher(config(route={"receiver": "r", "group_by": ["..."], "group_wait": "0s", "group_interval": "0s"},
                          severity={"budget_pace": "warning"}))
    d.ingest(make_alert("team:search", scope="team", subject="search", team="search", detector="budget_pace", severity="error"), 0, now=0.0)
    d.ingest(make_alert("key:s1", subject="s1", team="search", severity="error"), 1, now=0.0)      # error > mapped warning
    d.ingest(make_alert("key:s2", subject="s2", team="search", severity="warning"), 2, now=0.0)    # same severity: muted
    result = d.flush_due(now=0.0)
    assert sorted(n.group_labels["dedup_key"] for n in result.notifications) == ["key:s1", "team:search"]
    assert [m[0] for m in result.muted] == [make_alert("key:s2", subject="s2", team="search", severity="warning").notification_id]
