"""Credentials never reach a log line or ``config show`` (issue 16, item 7).

A bearer token in an Authorization header over aiohttp's size limit used to be logged with
the "bad request" error; credentials typed into URLs were printed by ``config show`` and
passed ``config validate --strict``.
"""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from spendwatch.cli import cli

from ingest_offline import offline_ingest

TOKEN = "tok-SECRET-" + "z" * 20_000


@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key"])
async def test_an_oversized_header_is_400_and_its_value_is_never_logged(caplog, header: str) -> None:
    caplog.set_level(logging.DEBUG)
    value = f"Bearer {TOKEN}" if header == "Authorization" else TOKEN
    async with offline_ingest(tokens={"gw": "tok-SECRET-short-0123"}) as ingest:
        status, _ = await ingest.post(b"{}", {header: value})
    assert status == 400
    assert "tok-SECRET" not in caplog.text
    assert any("LineTooLong" in r.getMessage() and "not logged" in r.getMessage() for r in caplog.records)


async def test_a_token_longer_than_aiohttps_default_limit_still_authenticates(caplog) -> None:
    token = "tok-long-jwt-" + "j" * 12_000  # over aiohttp's 8,190 bytes, within ingest.max_header_bytes
    async with offline_ingest(tokens={"gw": token}) as ingest:
        status, body = await ingest.post(b"[]", {"Authorization": f"Bearer {token}"})
    assert (status, body["error"]) == (400, "empty_body")  # authenticated, then the body judged


CREDENTIAL_URLS = """\
clickhouse:
  url: https://default:hunter2@ch.example.com:8443
paging:
  route:
    receiver: team
  receivers:
    - name: team
      slack:
        - bot_token_env: SLACK_TOKEN
          channel: "#spend"
          api_url: https://bot:xoxb-hunter3@slack.example.com/api/
      pagerduty:
        - routing_key_env: PD_KEY
          url: https://events.pagerduty.com/integration/hunter4hunter4hunter4hunter4hunt/enqueue
"""


def test_credentials_typed_into_urls_are_masked_and_fail_strict_validation(tmp_path) -> None:
    path = tmp_path / "spendwatch.yaml"
    path.write_text(CREDENTIAL_URLS)
    runner = CliRunner()
    lenient = runner.invoke(cli, ["config", "validate", str(path)])
    strict = runner.invoke(cli, ["config", "validate", "--strict", str(path)])
    assert lenient.exit_code == 0 and strict.exit_code == 1
    for dotted in ("clickhouse.url", "paging.receivers[0].slack[0].api_url", "paging.receivers[0].pagerduty[0].url"):
        assert f"warning: {path}" in strict.output and dotted in strict.output
    for command in (["config", "show", "--config", str(path)], ["config", "show", "--config", str(path), "--format", "json"]):
        shown = runner.invoke(cli, command)
        assert shown.exit_code == 0
        assert "hunter" not in shown.output and "ch.example.com:8443" in shown.output
    assert "hunter" not in strict.output
