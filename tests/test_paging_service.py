"""The pager service against the real broker: grouping, silence, inhibition, outages, dead letters, restart.

Alerts are produced to a real Kafka-protocol broker; the service delivers to local fake
PagerDuty and Slack servers through the real clients. Nothing sleeps: tests await what
the fakes received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from aiokafka import AIOKafkaConsumer
from paging_fakes import ROUTING_KEY, FakePagerDuty, FakeSlack, make_alert, produce

from spendwatch.broker import create_topics
from spendwatch.sinks.paging.config import PagingConfig
from spendwatch.sinks.paging.service import PagerService
from spendwatch.streams.config import TopicsConfig

pytestmark = pytest.mark.kafka


@pytest.fixture
async def fakes(monkeypatch):
    slack, pd = await FakeSlack().start(), await FakePagerDuty().start()
    monkeypatch.setenv("TEST_PD_KEY", ROUTING_KEY)
    monkeypatch.setenv("TEST_SLACK_TOKEN", slack.token)
    yield slack, pd
    slack.release()
    await slack.stop()
    await pd.stop()


def paging_config(slack: FakeSlack, pd: FakePagerDuty, tmp_path, **route) -> PagingConfig:
    return PagingConfig.model_validate({
        "consumer_group": f"pager-{tmp_path.name}", "transactional_id": f"pager-{tmp_path.name}",
        "route": {"receiver": "owners", "group_by": ["team"], "group_wait": "0s", "group_interval": "0s",
                  "repeat_interval": "1h", **route},
        "receivers": [{
            "name": "owners",
            "pagerduty": [{"routing_key_env": "TEST_PD_KEY", "url": pd.enqueue_url}],
            "slack": [{"bot_token_env": "TEST_SLACK_TOKEN", "channel": "C0SPEND01", "api_url": slack.api_url}],
            "console": [{"stdout": False, "path": str(tmp_path / "pages.jsonl")}],
        }],
        "silences": [{"matchers": ['team="batch"'], "ends_at": "2030-01-01T00:00:00Z", "comment": "nightly backfill"}],
        "retry": {"initial_backoff": "10ms", "max_backoff": "50ms"},
    })


@contextlib.asynccontextmanager
async def running(service: PagerService):
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait([task, ready], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield task
    finally:
        ready.cancel()
        task.cancel()  # a hard stop: nothing is flushed or committed on the way out
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def topics(unique_prefix, kafka_bootstrap):
    t = TopicsConfig(alerts=f"{unique_prefix}-alerts", dead_letters=f"{unique_prefix}-dead",
                     **({"pager_log": f"{unique_prefix}-pager-log"} if "pager_log" in TopicsConfig.model_fields else {}))
    asyncio.run(create_topics(kafka_bootstrap, {t.alerts: 2, t.dead_letters: 1}))
    return t


async def dead_letters(bootstrap: str, topic: str, n: int) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    out: list[dict] = []
    try:
        async with asyncio.timeout(30):
            while len(out) < n:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend(json.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return out


async def committed_total(bootstrap: str, topic: str, group: str) -> int:
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(2)])
    finally:
        await consumer.stop()


async def test_groups_silences_inhibits_and_resolves(fakes, topics, kafka_bootstrap, tmp_path):
    slack, pd = fakes
    config = paging_config(slack, pd, tmp_path, group_wait="1s")
    service = PagerService(kafka_bootstrap, topics, config, alerts_partitions=2, poll_interval=0.1)
    async with running(service):
        await produce(kafka_bootstrap, topics.alerts, [
            make_alert("spike:key:k1", subject="k1"),                   # two keys of one team:
            make_alert("spike:key:k2", subject="k2", minute=1),         # one message, one incident
            make_alert("spike:key:b1", subject="b1", team="batch"),     # silenced
        ])
        await slack.wait_for(lambda: len(slack.messages) >= 1 and len(pd.events) >= 1)
        await produce(kafka_bootstrap, topics.alerts, [
            make_alert("burn:team:search", scope="team", subject="search", team="search", detector="hourly_burn", minute=2),
            make_alert("spike:key:s1", subject="s1", team="search", minute=3),   # inhibited by the team page
            make_alert("spike:key:k1", subject="k1", action="resolve", minute=30, observed=20),
            make_alert("spike:key:k2", subject="k2", action="resolve", minute=31, observed=20),
        ])
        await slack.wait_for(lambda: len(pd.events) >= 3 and len(slack.updates) >= 1)
        await service.drain(timeout=20)

    roots = slack.roots()
    assert len(roots) == 2, [m["text"] for m in roots]  # payments (k1+k2), search (team only)
    payments = next((m for m in roots if "payments" in json.dumps(m["posted_blocks"])), None)
    assert payments is not None, [m["text"] for m in roots]
    posted = json.dumps(payments["posted_blocks"])
    assert "key k1" in posted and "key k2" in posted  # two keys grouped into one message
    everything = json.dumps([m["posted_blocks"] for m in slack.messages] + [u["blocks"] for u in slack.updates])
    assert "key b1" not in everything and "key s1" not in everything  # silenced, inhibited
    by_action = {a: [e for e in pd.events if e["event_action"] == a] for a in ("trigger", "resolve")}
    assert len(by_action["trigger"]) == 2 and len(by_action["resolve"]) == 1
    payments_pd = next(e for e in by_action["trigger"] if e["payload"]["group"] == "payments")
    assert payments_pd["payload"]["summary"].startswith("[2 alerts, team=payments]")
    assert by_action["resolve"][0]["dedup_key"] == payments_pd["dedup_key"]
    assert {e["dedup_key"] for e in by_action["trigger"]} == {payments_pd["dedup_key"], next(
        e["dedup_key"] for e in by_action["trigger"] if e is not payments_pd)}
    assert len({e["dedup_key"] for e in by_action["trigger"]}) == 2
    assert payments["text"].startswith("Resolved")  # the original message was updated
    assert any(m["thread_ts"] == payments["ts"] and "Resolved" in m["blocks"][0]["text"]["text"] for m in slack.messages)
    lines = [json.loads(x) for x in (tmp_path / "pages.jsonl").read_text().splitlines()]
    assert [line["status"] for line in lines].count("resolved") == 1


async def test_outage_and_bad_events_lose_nothing(fakes, topics, kafka_bootstrap, tmp_path):
    slack, pd = fakes
    config = paging_config(slack, pd, tmp_path, group_by=["..."])
    service = PagerService(kafka_bootstrap, topics, config, alerts_partitions=2, poll_interval=0.1)
    slack.fail_next(503, times=4)
    slack.fail_next(429, times=3, retry_after="0")
    pd.fail_next(429, times=5, retry_after="0")
    pd.fail_next(502, times=3)
    async with running(service):
        await produce(kafka_bootstrap, topics.alerts, [b"{not json", *[make_alert(f"spike:key:k{i}", subject=f"k{i}", minute=i) for i in range(4)]])
        await slack.wait_for(lambda: len(slack.messages) == 4 and len(pd.events) == 4)
        await service.drain(timeout=20)
    assert sorted(e["dedup_key"] for e in pd.events) == sorted(pd.pages) == [f"spike:key:k{i}" for i in range(4)]
    assert len(set(slack.notification_ids())) == 4
    letters = await dead_letters(kafka_bootstrap, topics.dead_letters, 1)
    assert letters[0]["stage"] == "pager" and letters[0]["error_type"] == "validation"
    assert await committed_total(kafka_bootstrap, topics.alerts, config.consumer_group) == 5  # nothing left to replay


async def test_pagerduty_400_goes_to_the_dead_letter_topic(fakes, topics, kafka_bootstrap, tmp_path, monkeypatch):
    slack, pd = fakes
    monkeypatch.setenv("TEST_PD_KEY", "not-a-32-character-key")
    service = PagerService(kafka_bootstrap, topics, paging_config(slack, pd, tmp_path, group_by=["..."]),
                           alerts_partitions=2, poll_interval=0.1)
    async with running(service):
        await produce(kafka_bootstrap, topics.alerts, [make_alert("spike:key:k1")])
        await slack.wait_for(lambda: len(pd.rejected) == 1 and len(slack.messages) == 1)
        letters = await dead_letters(kafka_bootstrap, topics.dead_letters, 1)
    assert letters[0]["stage"] == "pagerduty" and letters[0]["error_type"] == "pagerduty_400"
    assert "routing_key" in letters[0]["reason"]


async def test_restart_mid_delivery_sends_each_page_exactly_once(fakes, topics, kafka_bootstrap, tmp_path):
    """Kill the pager while Slack holds a request it already accepted; the restarted pager finds it and goes on."""
    slack, pd = fakes
    config = paging_config(slack, pd, tmp_path, group_by=["..."])
    first = [make_alert(f"spike:key:k{i}", subject=f"k{i}", minute=i) for i in range(5)]
    slack.hang_on_post(3)
    service = PagerService(kafka_bootstrap, topics, config, alerts_partitions=2, poll_interval=0.1)
    async with running(service):
        await produce(kafka_bootstrap, topics.alerts, first)
        await asyncio.wait_for(slack.hung.wait(), 30)
    # the pager is gone; Slack had accepted the 3rd message, the pager never heard back
    slack.release()
    second = [make_alert(f"spike:key:k{i}", subject=f"k{i}", action="resolve", minute=60 + i) for i in range(5)]
    await produce(kafka_bootstrap, topics.alerts, second)
    restarted = PagerService(kafka_bootstrap, topics, config, alerts_partitions=2, poll_interval=0.1)
    async with running(restarted):
        await slack.wait_for(lambda: len(slack.updates) >= 5 and len(pd.resolutions) >= 5, timeout=40)
        await restarted.drain(timeout=20)

    ids = slack.notification_ids()
    assert len(ids) == len(set(ids)) == 10, ids  # 5 triggers + 5 resolve replies, none twice
    assert len(slack.roots()) == 5
    # each episode paged once and resolved once (a re-sent in-flight trigger is deduplicated by PagerDuty)
    assert sorted(pd.pages) == sorted(pd.resolutions) == sorted(a.dedup_key for a in first)
    lines = [json.loads(x)["notification_id"] for x in (tmp_path / "pages.jsonl").read_text().splitlines()]
    assert len(lines) == len(set(lines)) == 10
