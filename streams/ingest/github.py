"""GitHub webhooks -> outcome events: a merged pull request is a ``pr_merged`` outcome.

Cost per accepted outcome (the ``efficiency`` detector, the ``cost_per_outcome`` report) needs
outcomes; this receiver makes them from where they happen, with no custom code. Point a GitHub
webhook (repository or organisation, content type ``application/json``, event *Pull requests*)
at ``POST /v1/github`` with a secret; the secret's environment variable is named in
``ingest.github.secret_env``. Every delivery's ``X-Hub-Signature-256`` (HMAC-SHA256 of the body)
is verified before anything is read. The PR's author, or its head branch, maps to who spent the
tokens (``ingest.github.authors`` / ``branch_prefixes``); an unmapped author is attributed to the
user ``github:<login>``. Redeliveries of one merge give the same ``outcome_id``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.outcome import OutcomeEvent

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"


class GithubOwner(BaseModel):
    """Who a PR's tokens were spent by: the key, user, team (and session) its outcome is booked to."""

    model_config = ConfigDict(extra="forbid")

    api_key_hash: str | None = Field(default=None, description="The key (its hash) the PR's agent spends with.")
    user: str | None = Field(default=None, description="The user the outcome is booked to.")
    team: str | None = Field(default=None, description="The team the outcome is booked to.")
    session_from_branch: bool = Field(
        default=False, description="Use the PR's head branch as the session id (agents that run one session per branch).")


class GithubConfig(BaseModel):
    """``ingest.github``: the GitHub webhook receiver (``POST /v1/github``)."""

    model_config = ConfigDict(extra="forbid")

    secret_env: str = Field(
        default="SPENDWATCH_GITHUB_WEBHOOK_SECRET",
        description="Name of the environment variable holding the webhook secret. Unset or empty: the receiver "
        "answers 404 (off).")
    authors: dict[str, GithubOwner] = Field(
        default_factory=dict, description="PR author login -> who the merged PR is booked to.")
    branch_prefixes: dict[str, GithubOwner] = Field(
        default_factory=dict,
        description="Head branch prefix -> who (the longest matching prefix wins over the author: an agent's "
        "branches name the agent, whoever opened the PR).")


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``X-Hub-Signature-256`` is the HMAC-SHA256 of ``body`` under ``secret`` (constant time).

    >>> body = b'{"zen": "Keep it logically awesome."}'
    >>> good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    >>> signature_ok("s3cret", body, good), signature_ok("s3cret", body + b" ", good), signature_ok("s3cret", body, None)
    (True, False, False)
    """
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.strip())


def owner_for(config: GithubConfig, author: str, branch: str) -> GithubOwner:
    """The longest branch prefix that matches, else the author's mapping, else the user ``github:<author>``.

    >>> cfg = GithubConfig(authors={"ann": GithubOwner(user="ann", team="search")},
    ...                    branch_prefixes={"agent/": GithubOwner(api_key_hash="k-agent", team="platform")})
    >>> owner_for(cfg, "ann", "agent/fix-42").api_key_hash, owner_for(cfg, "ann", "fix-42").team
    ('k-agent', 'search')
    >>> owner_for(cfg, "bob", "fix-1").user
    'github:bob'
    """
    matches = [p for p in config.branch_prefixes if branch.startswith(p)]
    if matches:
        return config.branch_prefixes[max(matches, key=len)]
    return config.authors.get(author) or GithubOwner(user=f"github:{author}")


def merged_pr_outcome(payload: Mapping[str, Any], config: GithubConfig) -> OutcomeEvent | None:
    """The outcome of one ``pull_request`` delivery: a ``pr_merged`` for a merged close, ``None`` for any other
    action (opened, synchronize, closed without merging...). Raises :class:`ParseError` on a malformed payload."""
    if payload.get("action") != "closed":
        return None
    pr = payload.get("pull_request")
    repo = payload.get("repository")
    if not isinstance(pr, Mapping) or not isinstance(repo, Mapping):
        raise ParseError("validation", "a pull_request event needs pull_request and repository objects",
                         "pull_request", "github")
    if pr.get("merged") is not True:
        return None
    try:
        author = str(pr["user"]["login"])
        branch = str(pr["head"]["ref"])
        number = int(pr["number"])
        full_name = str(repo["full_name"])
        merged_at = datetime.fromisoformat(str(pr["merged_at"]).replace("Z", "+00:00")).astimezone(UTC)
    except (KeyError, TypeError, ValueError) as exc:
        raise ParseError("validation", f"pull_request lacks a usable field ({exc})", "pull_request", "github") from None
    owner = owner_for(config, author, branch)
    attributes: dict[str, str | int | float | bool] = {"repository": full_name, "number": number, "author": author,
                                                        "branch": branch}
    for name in ("additions", "deletions", "changed_files", "commits"):
        if isinstance(pr.get(name), int) and not isinstance(pr.get(name), bool):
            attributes[name] = pr[name]
    return OutcomeEvent(
        outcome_id=f"github:{full_name}#{number}:merged",
        event_time=merged_at,
        kind="pr_merged",
        api_key_hash=owner.api_key_hash,
        user=owner.user or (None if owner.api_key_hash else f"github:{author}"),  # always attributable
        team=owner.team,
        session_id=branch if owner.session_from_branch else None,
        source="github",
        attributes=attributes,
    )
