"""docs/paging.md shows the Slack message and PagerDuty event the code produces today, and they are valid."""

from __future__ import annotations

import json
import re

from paging_fakes import FakePagerDuty, FakeSlack

from spendwatch.sinks.paging.samples import render, samples


def test_docs_samples_are_current(repo_root):
    doc = (repo_root / "docs" / "paging.md").read_text()
    assert "<!-- sample:slack -->" in doc and "<!-- sample:pagerduty -->" in doc
    assert render(doc) == doc, "docs/paging.md is stale: run python -m spendwatch.sinks.paging.samples docs/paging.md"


def test_samples_pass_the_services_checks():
    current = samples()
    slack = json.loads(current["slack"])
    assert FakeSlack.check_blocks(slack["blocks"]) is None and slack["text"]
    assert FakePagerDuty.validate(current["pagerduty"].encode()) == []


def test_docs_yaml_example_is_a_valid_paging_section(repo_root, monkeypatch):
    import yaml

    from spendwatch.sinks.paging.config import PagingConfig

    monkeypatch.setenv("PAYMENTS_CHANNEL", "C04PAYMENTS")
    doc = (repo_root / "docs" / "paging.md").read_text()
    block = re.search(r"```yaml\n(.*?)\n```", doc, re.S).group(1).replace("${PAYMENTS_CHANNEL}", "C04PAYMENTS")
    config = PagingConfig.model_validate(yaml.safe_load(block)["paging"])
    assert [r.name for r in config.receivers] == ["platform-oncall", "payments", "slack-only"]
