"""`spendwatch pager` as a real process: SIGKILL it mid-delivery, start it again, every page arrives exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys

import pytest
import yaml
from paging_fakes import ROUTING_KEY, FakePagerDuty, FakeSlack, make_alert, produce

from spendwatch.broker import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@contextlib.asynccontextmanager
async def pager_process(config_path, env, log_path):
    with open(log_path, "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from spendwatch.cli import main; main()", "pager", "--config", str(config_path),
            env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def test_sigkill_and_restart_deliver_each_page_exactly_once(kafka_bootstrap, unique_prefix, tmp_path):
    slack, pd = await FakeSlack().start(), await FakePagerDuty().start()
    topics = {"alerts": f"{unique_prefix}-alerts", "dead_letters": f"{unique_prefix}-dead", "pager_log": f"{unique_prefix}-log"}
    await create_topics(kafka_bootstrap, {topics["alerts"]: 2, topics["dead_letters"]: 1})
    config = {
        "data_dir": str(tmp_path / "home"),
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topics": topics},
        "streams": {"partitions": 2},
        "paging": {
            "consumer_group": unique_prefix, "transactional_id": unique_prefix,
            "route": {"receiver": "owners", "group_by": ["..."], "group_wait": "0s", "group_interval": "0s"},
            "receivers": [{"name": "owners",
                           "pagerduty": [{"routing_key_env": "CLI_PD_KEY", "url": pd.enqueue_url}],
                           "slack": [{"bot_token_env": "CLI_SLACK_TOKEN", "channel": "C0SPEND01", "api_url": slack.api_url}]}],
            "retry": {"initial_backoff": "20ms", "max_backoff": "200ms"},
        },
    }
    config_path = tmp_path / "spendwatch.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "CLI_PD_KEY": ROUTING_KEY, "CLI_SLACK_TOKEN": slack.token}
    alerts = [make_alert(f"spike:key:k{i}", subject=f"k{i}", minute=i) for i in range(4)]
    try:
        slack.hang_on_post(2)
        await produce(kafka_bootstrap, topics["alerts"], alerts)
        async with pager_process(config_path, env, tmp_path / "pager.log") as proc:
            await asyncio.wait_for(slack.hung.wait(), 60)
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        slack.release()
        await produce(kafka_bootstrap, topics["alerts"], [make_alert("spike:key:k0", subject="k0", action="resolve", minute=50)])
        async with pager_process(config_path, env, tmp_path / "pager.log"):
            await slack.wait_for(lambda: len(slack.messages) >= 5 and len(pd.resolutions) >= 1, timeout=60)
            await slack.wait_for(lambda: len(slack.updates) >= 1, timeout=30)
        ids = slack.notification_ids()
        assert len(ids) == len(set(ids)) == 5, (ids, (tmp_path / "pager.log").read_text()[-3000:])
        # PagerDuty may see an in-flight trigger again after the kill; its dedup_key makes that a no-op
        assert sorted(pd.pages) == sorted(a.dedup_key for a in alerts)
        assert pd.resolutions == ["spike:key:k0"]
        assert json.dumps(slack.updates[0]["blocks"]).count("Resolved") >= 1
    finally:
        slack.release()
        await slack.stop()
        await pd.stop()
