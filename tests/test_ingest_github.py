"""GitHub's pull_request webhook (payload and headers as GitHub sends them) through the ingest service:
a merged PR becomes one pr_merged outcome on the raw topic, attributed from YAML; a bad signature,
other actions and other events produce nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import aiohttp
import orjson
import pytest
from ingest_support import ingest_settings, read_topic, running_ingest, values

from spendwatch.schemas.adapters import parse_message
from spendwatch.schemas.outcome import OutcomeEvent
from spendwatch.streams.ingest.github import GithubConfig, GithubOwner

pytestmark = pytest.mark.kafka

SECRET = "It's a Secret to Everybody"


def pull_request_event(action: str = "closed", merged: bool = True, author: str = "octocat",
                       branch: str = "agent/search-fix-1347", number: int = 1347) -> dict:
    """The shape of GitHub's pull_request webhook payload (docs.github.com, webhook events and payloads)."""
    user = {"login": author, "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": False}
    repo = {"id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": "Hello-World",
            "full_name": "octo-org/Hello-World", "private": True, "owner": {"login": "octo-org", "type": "Organization"},
            "html_url": "https://github.com/octo-org/Hello-World", "default_branch": "main"}
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.com/repos/octo-org/Hello-World/pulls/{number}", "id": 1, "node_id": "PR_1",
            "html_url": f"https://github.com/octo-org/Hello-World/pull/{number}", "number": number,
            "state": "closed" if action == "closed" else "open", "locked": False,
            "title": "Fix the retrieval cache", "user": user, "body": "private description text",
            "created_at": "2026-11-04T09:12:44Z", "updated_at": "2026-11-05T16:20:01Z",
            "closed_at": "2026-11-05T16:20:01Z" if action == "closed" else None,
            "merged_at": "2026-11-05T16:20:01Z" if merged else None,
            "merge_commit_sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6",
            "head": {"label": f"octo-org:{branch}", "ref": branch, "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                     "user": user, "repo": repo},
            "base": {"label": "octo-org:main", "ref": "main", "sha": "9049f1265b7d61be4a8904a9a27120d2064dab3b",
                     "user": user, "repo": repo},
            "draft": False, "merged": merged, "mergeable": None, "merged_by": user if merged else None,
            "comments": 2, "review_comments": 1, "commits": 3, "additions": 120, "deletions": 14, "changed_files": 5,
        },
        "repository": repo,
        "organization": {"login": "octo-org", "id": 9919},
        "sender": user,
    }


def headers(body: bytes, event: str = "pull_request", secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd", "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()), "X-GitHub-Hook-ID": "292430182",
            "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


async def test_a_merged_pull_request_becomes_one_attributed_outcome(kafka_bootstrap, unique_prefix, monkeypatch):
    monkeypatch.setenv("SPENDWATCH_GITHUB_WEBHOOK_SECRET", SECRET)
    github = GithubConfig(authors={"octocat": GithubOwner(user="ann", team="search")},
                          branch_prefixes={"agent/search-": GithubOwner(api_key_hash="hash-search-agent", team="search",
                                                                        session_from_branch=True)})
    settings = ingest_settings(kafka_bootstrap, unique_prefix, github=github)
    async with running_ingest(settings) as svc, aiohttp.ClientSession() as http:
        async def post(payload: dict, **kw) -> tuple[int, dict]:
            body = json.dumps(payload).encode()
            async with http.post(f"{svc.url}/v1/github", data=body, headers=headers(body, **kw)) as resp:
                return resp.status, await resp.json()

        merged = pull_request_event()
        status, answer = await post(merged)
        assert (status, answer["outcomes"]) == (200, 1), answer
        assert (await post(merged))[0] == 200  # GitHub's redelivery: the same outcome_id, dropped downstream
        by_author = pull_request_event(branch="fix-typo", number=12)
        assert (await post(by_author))[1]["outcomes"] == 1
        for ignored in (pull_request_event(merged=False, number=13), pull_request_event(action="opened", merged=False)):
            assert (await post(ignored))[1] == {"ignored": "not a merged pull request", "outcomes": 0}
        assert (await post({"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping"))[1]["outcomes"] == 0
        assert (await post(pull_request_event(number=14), secret="wrong secret"))[0] == 401

    written = values(await read_topic(kafka_bootstrap, settings.kafka.topics.raw))  # keyed: partitions interleave
    assert sorted(w["outcome_id"] for w in written) == ["github:octo-org/Hello-World#12:merged"] + [
        "github:octo-org/Hello-World#1347:merged"] * 2
    outcomes = {o.outcome_id: o for w in written for o in parse_message(orjson.dumps(w))}  # what the worker reads
    agent = outcomes["github:octo-org/Hello-World#1347:merged"]
    human = outcomes["github:octo-org/Hello-World#12:merged"]
    assert isinstance(agent, OutcomeEvent) and agent.kind == "pr_merged" and agent.source == "github"
    assert (agent.api_key_hash, agent.team, agent.session_id) == ("hash-search-agent", "search", "agent/search-fix-1347")
    assert agent.event_time.isoformat() == "2026-11-05T16:20:01+00:00"
    assert agent.attributes["additions"] == 120 and agent.attributes["author"] == "octocat"
    assert (human.user, human.team, human.api_key_hash) == ("ann", "search", None)
    assert b"private description text" not in orjson.dumps(written)


async def test_the_receiver_is_off_without_a_secret(kafka_bootstrap, unique_prefix, monkeypatch):
    monkeypatch.delenv("SPENDWATCH_GITHUB_WEBHOOK_SECRET", raising=False)
    settings = ingest_settings(kafka_bootstrap, unique_prefix)
    async with running_ingest(settings) as svc, aiohttp.ClientSession() as http:
        body = json.dumps(pull_request_event()).encode()
        async with http.post(f"{svc.url}/v1/github", data=body, headers=headers(body)) as resp:
            assert resp.status == 404 and "SPENDWATCH_GITHUB_WEBHOOK_SECRET" in (await resp.json())["detail"]
