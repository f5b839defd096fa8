"""The real slack-sdk client and the PagerDuty client against local servers that check what the real services check."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from spendwatch.schemas.alert import Action
from spendwatch.sinks.paging.config import PagerDutyReceiverConfig, PagingConfig, RetryConfig, SlackReceiverConfig
from spendwatch.sinks.paging.grouping import Dispatcher, IntegrationSpec
from spendwatch.sinks.paging.pagerduty import PagerDutyIntegration, events_for
from spendwatch.sinks.paging.retry import PermanentError, TransientError, retry_forever
import spendwatch.sinks.paging.slack as slack_module
from spendwatch.sinks.paging.slack import SlackIntegration, SlackWebhookIntegration, blocks
from paging_fakes import ROUTING_KEY, FakePagerDuty, FakeSlack, make_alert

FAST = RetryConfig(initial_backoff=timedelta(milliseconds=10), max_backoff=timedelta(milliseconds=50))


@pytest.fixture
async def slack():
    fake = await FakeSlack().start()
    yield fake
    fake.release()
    await fake.stop()


@pytest.fixture
async def pagerduty():
    fake = await FakePagerDuty().start()
    yield fake
    await fake.stop()


def notifications(*alerts, group_by=("...",), config: PagingConfig | None = None):
    """Run alerts through a Dispatcher with no waits; returns the notifications per flush."""
    config = config or PagingConfig.model_validate({
        "route": {"receiver": "r", "group_by": list(group_by), "group_wait": "0s", "group_interval": "0s", "repeat_interval": "1h"},
        "receivers": [{"name": "r"}],
    })
    d = Dispatcher(config, {"r": [IntegrationSpec("r/x/0", "r")]})
    out = []
    for i, alert in enumerate(alerts):
        d.ingest(alert, i, now=float(i))
        out.extend(d.flush_due(now=float(i)).notifications)
    return out


def slack_integration(fake: FakeSlack, monkeypatch=None) -> SlackIntegration:
    receiver = SlackReceiverConfig(bot_token_env="X", channel="#spend-alerts", api_url=fake.api_url)
    return SlackIntegration(IntegrationSpec("r/slack/0", "r"), receiver, fake.token, "#spend-alerts", PagingConfig(retry=FAST))


def pd_integration(fake: FakePagerDuty, key: str = ROUTING_KEY) -> PagerDutyIntegration:
    receiver = PagerDutyReceiverConfig(routing_key_env="X", url=fake.enqueue_url, rate_limit_per_minute=6000)
    return PagerDutyIntegration(IntegrationSpec("r/pagerduty/0", "r"), receiver, key, PagingConfig(retry=FAST))


async def test_slack_trigger_then_resolve_updates_the_original_message(slack: FakeSlack):
    trigger, resolve = notifications(make_alert(), make_alert(action="resolve", minute=40, observed=30))
    integ = slack_integration(slack)
    root = await integ.deliver(trigger, None, recovering=False)
    assert root == {"channel": "C0SPEND01", "ts": slack.messages[0]["ts"]}
    message = slack.messages[0]
    assert slack.errors == []
    assert "spent $812" in message["text"]
    header = message["blocks"][0]["text"]["text"]
    assert "Spend spike" in header and "payments" in header
    rendered = json.dumps(message["blocks"])
    for needle in ("How much", "$812.00", "Compared to", "$95.00 expected", "How fast", "claude-opus-4", "baseline"):
        assert needle in rendered, needle
    assert message["metadata"]["event_payload"]["notification_id"] == trigger.id

    assert await integ.deliver(resolve, root, recovering=False) is None
    assert [m["thread_ts"] for m in slack.messages] == [None, root["ts"]]
    assert len(slack.updates) == 1 and slack.updates[0]["ts"] == root["ts"]
    assert "Resolved" in slack.updates[0]["blocks"][0]["text"]["text"]
    assert slack.messages[0]["text"].startswith("Resolved")
    await integ.close()


async def test_slack_blocks_stay_within_limits_for_huge_groups(slack: FakeSlack):
    alerts = [make_alert(f"spike:key:k{i}", subject=f"k{i}" + "x" * 400, minute=0) for i in range(80)]
    n = notifications(*alerts, group_by=("team",))[-1]
    assert len(n.firing) == 80
    body = blocks(n)
    assert FakeSlack.check_blocks(body) is None
    assert len(body) <= 50
    integ = slack_integration(slack)
    await integ.deliver(n, None, recovering=False)
    assert slack.errors == [] and len(slack.messages) == 1
    await integ.close()


async def test_slack_rejections_are_permanent_and_outages_transient(slack: FakeSlack):
    n = notifications(make_alert())[0]
    wrong_channel = SlackIntegration(IntegrationSpec("r/slack/0", "r"), SlackReceiverConfig(bot_token_env="X", channel="#nope", api_url=slack.api_url),
                                     slack.token, "#nope", PagingConfig())
    with pytest.raises(PermanentError, match="channel_not_found"):
        await wrong_channel.deliver(n, None, recovering=False)
    bad_token = SlackIntegration(IntegrationSpec("r/slack/0", "r"), SlackReceiverConfig(bot_token_env="X", channel="#spend-alerts", api_url=slack.api_url),
                                 "xoxb-wrong", "#spend-alerts", PagingConfig())
    with pytest.raises(PermanentError, match="invalid_auth"):
        await bad_token.deliver(n, None, recovering=False)
    integ = slack_integration(slack)
    slack.fail_next(429, retry_after="7")
    with pytest.raises(TransientError) as exc:
        await integ.deliver(n, None, recovering=False)
    assert exc.value.retry_after == 7
    slack.fail_next(503)
    with pytest.raises(TransientError):
        await integ.deliver(n, None, recovering=False)
    assert slack.messages == []


async def test_slack_retry_honours_retry_after_and_posts_once(slack: FakeSlack):
    n = notifications(make_alert())[0]
    integ = slack_integration(slack)
    slack.fail_next(429, retry_after="1")
    slack.fail_next(502)
    state = {"recovering": False}

    def on_retry(exc, delay):
        state["recovering"] = True

    await retry_forever(lambda: integ.deliver(n, None, state["recovering"]), FAST, "test", on_retry)
    assert len(slack.messages) == 1
    (t429, _, s1), (t502, _, s2) = slack.request_log[:2]
    assert (s1, s2) == (429, 502)
    assert t502 - t429 >= 0.95  # waited for Retry-After: 1, not the 10 ms backoff


async def test_slack_recovery_finds_the_message_posted_before_a_crash(slack: FakeSlack):
    trigger, repeat = notifications(make_alert(), make_alert(action="repeat", minute=90))
    assert repeat.announced == {trigger.firing[0].dedup_key: Action.repeat}
    integ = slack_integration(slack)
    root = await integ.deliver(trigger, None, recovering=False)
    # a crash after Slack accepted the post but before the pager recorded it: deliver again, recovering
    assert await integ.deliver(trigger, None, recovering=True) == root
    await integ.deliver(repeat, root, recovering=False)
    await integ.deliver(repeat, root, recovering=True)
    assert len(slack.messages) == 2, [m["text"] for m in slack.messages]
    assert slack.messages[1]["thread_ts"] == root["ts"] and slack.messages[1]["reply_broadcast"] is True
    await integ.close()


async def test_pagerduty_trigger_and_resolve_share_the_dedup_key(pagerduty: FakePagerDuty):
    trigger, resolve = notifications(make_alert("spike:key:k1:ep7"), make_alert("spike:key:k1:ep7", action="resolve", minute=40))
    integ = pd_integration(pagerduty)
    await integ.deliver(trigger, None, recovering=False)
    await integ.deliver(resolve, None, recovering=False)
    assert pagerduty.rejected == []
    sent_trigger, sent_resolve = pagerduty.events
    assert sent_trigger["event_action"] == "trigger" and sent_resolve["event_action"] == "resolve"
    assert sent_trigger["dedup_key"] == sent_resolve["dedup_key"] == "spike:key:k1:ep7"
    payload = sent_trigger["payload"]
    assert payload["severity"] == "error" and payload["component"] == "spend_spike" and payload["class"] == "key"
    assert payload["group"] == "payments" and payload["source"].startswith("spendwatch/key/k1")
    details = payload["custom_details"]
    assert details["observed"] == 812.0 and details["expected"] == 95.0
    assert details["root_cause"][0].startswith("model claude-opus-4")
    await integ.close()


async def test_pagerduty_limits_summary_and_payload_size(pagerduty: FakePagerDuty):
    huge = make_alert()
    long_summary = huge.model_copy(update={"summary": "x" * 1024, "details": {"blob": "y" * 700_000}})
    n = notifications(long_summary)[0]
    many = notifications(*[make_alert(f"k{i}", subject=f"k{i}", labels={"blob": "z" * 20_000}) for i in range(40)], group_by=("team",))[-1]
    integ = pd_integration(pagerduty)
    await integ.deliver(n, None, recovering=False)
    await integ.deliver(many, None, recovering=False)
    assert pagerduty.rejected == []
    assert len(pagerduty.events[0]["payload"]["summary"]) <= 1024
    assert len(json.dumps(pagerduty.events[1]).encode()) < 512 * 1024
    assert pagerduty.events[1]["payload"]["summary"].startswith("[40 alerts, team=payments]")
    await integ.close()


async def test_pagerduty_400_is_permanent_with_pagerdutys_errors(pagerduty: FakePagerDuty):
    n = notifications(make_alert())[0]
    integ = pd_integration(pagerduty, key="too-short")
    with pytest.raises(PermanentError, match="routing_key") as exc:
        await integ.deliver(n, None, recovering=False)
    assert exc.value.error_type == "pagerduty_400"
    await integ.close()


async def test_pagerduty_retries_429_and_5xx_until_accepted(pagerduty: FakePagerDuty):
    n = notifications(make_alert())[0]
    integ = pd_integration(pagerduty)
    pagerduty.fail_next(429, times=3, retry_after="0")
    pagerduty.fail_next(500, times=2)
    await retry_forever(lambda: integ.deliver(n, None, False), FAST, "test")
    assert [s for _, _, s in pagerduty.request_log] == [429, 429, 429, 500, 500, 202]
    assert len(pagerduty.events) == 1
    await integ.close()


def test_partial_resolve_of_a_group_sends_nothing_to_pagerduty():
    a, b = make_alert("k1", subject="k1"), make_alert("k2", subject="k2")
    out = notifications(a, b, make_alert("k1", subject="k1", action="resolve", minute=30), group_by=("team",))
    partial = out[-1]
    assert partial.announced == {"k1": Action.resolve} and [x.dedup_key for x in partial.firing] == ["k2"]
    assert events_for(partial, ROUTING_KEY, PagingConfig()) == []


async def test_rate_limiter_spaces_calls_per_routing_key():
    from spendwatch.sinks.paging.retry import RateLimiter

    clock = {"t": 0.0}
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: clock["t"])
    await limiter.acquire()
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()  # the bucket is empty until time passes
    clock["t"] = 1.0
    await asyncio.wait_for(waiter, 5)


async def test_slack_webhook_posts_with_fallback_and_classifies_failures(slack: FakeSlack, monkeypatch):
    trigger, resolve = notifications(make_alert(), make_alert(action="resolve", minute=40))
    hook = SlackWebhookIntegration(IntegrationSpec("r/slack/1", "r"), SlackReceiverConfig(webhook_url_env="X"), slack.webhook_url, PagingConfig())
    slack.fail_next(429, retry_after="4")
    with pytest.raises(TransientError) as exc:
        await hook.deliver(trigger, None, recovering=False)
    assert exc.value.retry_after == 4
    await hook.deliver(trigger, None, recovering=False)
    await hook.deliver(resolve, None, recovering=False)
    assert [m["text"][:9] for m in slack.messages] == ["[error] k", "Resolved:"]
    monkeypatch.setattr(slack_module, "blocks", lambda n: [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}])
    with pytest.raises(PermanentError, match="invalid_blocks"):
        await hook.deliver(trigger, None, recovering=False)
