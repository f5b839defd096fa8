"""The sample Slack message and PagerDuty event shown in docs/paging.md, generated from the real renderers.

``python -m spendwatch.sinks.paging.samples docs/paging.md`` rewrites the samples in
place; a test fails when the docs drift from the code.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from spendwatch.schemas.alert import Alert
from spendwatch.sinks.paging.config import PagingConfig
from spendwatch.sinks.paging.grouping import Dispatcher, IntegrationSpec
from spendwatch.sinks.paging.notification import Notification
from spendwatch.sinks.paging.pagerduty import events_for
from spendwatch.sinks.paging.slack import blocks, fallback_text

SAMPLE_ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
_BLOCK = re.compile(r"(<!-- sample:(?P<name>[a-z_]+) -->\n```json\n)(?P<body>.*?)(\n```$)", re.S | re.M)


def sample_alert() -> Alert:
    fired = datetime(2026, 11, 21, 3, 40, tzinfo=UTC)
    hourly = [31, 28, 25, 22, 20, 19, 21, 26, 34, 41, 45, 47, 46, 44, 43, 45, 48, 52, 61, 140, 390, 620, 790, 812]
    return Alert.model_validate({
        "action": "trigger", "detector": "spend_spike", "scope": "key", "subject": "sk-…9f2c",
        "fired_at": fired, "episode_started_at": fired - timedelta(hours=3, minutes=25), "severity": "critical",
        "summary": "key sk-…9f2c (support-agent, team payments) spent $812 in the last hour, 8.5x its baseline of $95/h",
        "observed": 812.0, "expected": 95.0, "unit": "usd", "dedup_key": "spend_spike:key:sk-…9f2c:2026-11-21T00:15",
        "labels": {"team": "payments", "key_alias": "support-agent", "user": "agents@payments.example.com"},
        "root_cause": [
            {"kind": "model", "name": "claude-opus-4", "cost_usd": Decimal("702.40"), "share": 0.86, "requests": 1184},
            {"kind": "session", "name": "ticket-triage-loop-7781", "cost_usd": Decimal("655.10"), "share": 0.81, "requests": 1090},
        ],
        "series": [{"start": fired - timedelta(hours=24 - i), "spend_usd": Decimal(v), "baseline_usd": Decimal(40 + (i % 6))}
                   for i, v in enumerate(hourly)],
        "details": {"burn_usd_per_hour": 812.0},
    })


def sample_notification() -> Notification:
    config = PagingConfig.model_validate({
        "route": {"receiver": "payments", "group_by": ["team"], "group_wait": "0s"},
        "receivers": [{"name": "payments"}],
        "links": {"Dashboard": "https://grafana.example.com/d/spend?var-team={team}&var-key={subject}",
                  "Runbook": "https://wiki.example.com/runbooks/llm-spend-spike"},
    })
    dispatcher = Dispatcher(config, {"payments": [IntegrationSpec("payments/slack/0", "payments")]})
    dispatcher.ingest(sample_alert(), 0, now=0.0)
    (n,) = dispatcher.flush_due(now=0.0).notifications
    return n.model_copy(update={"created_at": datetime(2026, 11, 21, 3, 40, 2, tzinfo=UTC)})


def samples() -> dict[str, str]:
    n = sample_notification()
    slack = {"channel": "C0SPEND01", "text": fallback_text(n), "blocks": blocks(n)}
    (pd,) = events_for(n, SAMPLE_ROUTING_KEY, PagingConfig())
    return {"slack": json.dumps(slack, indent=2, ensure_ascii=False), "pagerduty": json.dumps(pd, indent=2, ensure_ascii=False)}


def render(doc: str) -> str:
    """``doc`` with every ``<!-- sample:NAME -->`` JSON block replaced by the current sample."""
    current = samples()
    return _BLOCK.sub(lambda m: m.group(1) + current[m.group("name")] + m.group(4), doc)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/paging.md")
    path.write_text(render(path.read_text()))
