"""Routing of alerts to owners (PagerDuty, Slack, console), Alertmanager-style.

The ``paging:`` section of the YAML file. Secrets never appear here: receivers name the
environment variables that hold them (``routing_key_env``, ``bot_token_env``,
``webhook_url_env``). With no YAML at all, the ``default`` receiver prints to the console
and also pages PagerDuty / Slack when ``SPENDWATCH_PAGERDUTY_ROUTING_KEY`` or
``SPENDWATCH_SLACK_BOT_TOKEN`` + ``SPENDWATCH_SLACK_CHANNEL`` (or
``SPENDWATCH_SLACK_WEBHOOK_URL``) are set.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from spendwatch.schemas.alert import Severity
from spendwatch.sinks.paging.matchers import Matcher

PAGERDUTY_ENQUEUE_URL = "https://events.pagerduty.com/v2/enqueue"
SLACK_API_URL = "https://slack.com/api/"

#: group_by value meaning "every alert is its own group" (one page per episode).
GROUP_BY_ALERT = "..."

Matchers = Annotated[list[str], Field(default_factory=list, description='Alertmanager-style matchers: team="payments", severity=~"critical|error", user!="ci-bot".')]


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")


def parse_duration(value: object) -> object:
    """Accept Alertmanager durations ('30s', '5m', '4h', '1d', '1h30m') besides what pydantic takes.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    """
    if isinstance(value, str) and value and (m := _DURATION.match(value.strip())) and any(m.groups()):
        d, h, mi, s, ms = (int(g or 0) for g in m.groups())
        return timedelta(days=d, hours=h, minutes=mi, seconds=s, milliseconds=ms)
    return value


#: A duration: '30s', '5m', '4h', '1d', seconds as a number, or ISO 8601.
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _check_matchers(values: list[str]) -> list[str]:
    for value in values:
        Matcher.parse(value)
    return values


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetryConfig(_Model):
    """How deliveries ride out 429s, 5xx and outages. Transient failures are retried for ever: no page is dropped."""

    initial_backoff: Duration = Field(default=timedelta(seconds=1), description="First wait after a transient failure.")
    max_backoff: Duration = Field(default=timedelta(minutes=2), description="Cap of the exponential backoff (full jitter below it).")
    multiplier: float = Field(default=2.0, ge=1.0, description="Backoff growth per attempt.")
    request_timeout: Duration = Field(default=timedelta(seconds=15), description="Timeout of one HTTP request.")


class PagerDutyReceiverConfig(_Model):
    routing_key_env: str = Field(description="Name of the environment variable holding the 32-character Events v2 integration (routing) key.")
    url: str = Field(default=PAGERDUTY_ENQUEUE_URL, description="Events API v2 enqueue URL (EU accounts: https://events.eu.pagerduty.com/v2/enqueue).")
    send_resolved: bool = Field(default=True, description="Send a resolve event when the group recovers.")
    rate_limit_per_minute: int = Field(default=120, ge=1, description="Events per minute per routing key (PagerDuty's documented limit).")
    skip_if_unset: bool = Field(default=False, description="Silently skip this integration when the environment variable is unset (used by the default config).")
    component: str | None = Field(default=None, description="payload.component; default: the alert's detector.")
    class_: str | None = Field(default=None, alias="class", description="payload.class; default: the alert's scope.")


class SlackReceiverConfig(_Model):
    bot_token_env: str | None = Field(default=None, description="Environment variable holding a bot token (xoxb-...) with chat:write and channels:history.")
    channel: str | None = Field(default=None, description="Channel id or name to post to (with bot_token_env). '${VAR}' interpolation works.")
    channel_env: str | None = Field(default=None, description="Environment variable holding the channel (alternative to channel).")
    webhook_url_env: str | None = Field(default=None, description="Environment variable holding an incoming-webhook URL (no message updates; at-least-once across a crash).")
    api_url: str = Field(default=SLACK_API_URL, description="Slack Web API base URL (tests point it at a local server).")
    send_resolved: bool = Field(default=True, description="Update the original message and reply in its thread on recovery.")
    rate_limit_per_minute: int = Field(default=60, ge=1, description="Messages per minute per channel (Slack allows about one per second).")
    skip_if_unset: bool = Field(default=False, description="Silently skip when the environment variables are unset (used by the default config).")

    @model_validator(mode="after")
    def _one_transport(self) -> SlackReceiverConfig:
        if bool(self.bot_token_env) == bool(self.webhook_url_env):
            raise ValueError("a slack receiver needs exactly one of bot_token_env (+ channel) or webhook_url_env")
        if self.bot_token_env and not (self.channel or self.channel_env):
            raise ValueError("a slack receiver with bot_token_env needs channel or channel_env")
        return self


class ConsoleReceiverConfig(_Model):
    stdout: bool = Field(default=True, description="Print one line plus details per notification.")
    path: Path | None = Field(default=None, description="Also append each notification as one JSON line to this file.")
    send_resolved: bool = Field(default=True, description="Print resolves too.")


class ReceiverConfig(_Model):
    name: str = Field(description="Referenced by routes.")
    pagerduty: list[PagerDutyReceiverConfig] = Field(default_factory=list)
    slack: list[SlackReceiverConfig] = Field(default_factory=list)
    console: list[ConsoleReceiverConfig] = Field(default_factory=list)


class RouteConfig(_Model):
    """A node of the routing tree. Unset timing/grouping fields inherit from the parent."""

    receiver: str | None = Field(default=None, description="Receiver name; inherited from the parent when unset.")
    matchers: Matchers
    group_by: list[str] | None = Field(default=None, description="Labels whose values form a group ('...' = one group per alert episode).")
    group_wait: Duration | None = Field(default=None, description="Wait before the first notification of a new group, to batch its alerts.")
    group_interval: Duration | None = Field(default=None, description="Wait before notifying about alerts added to (or resolved in) a group already notified.")
    repeat_interval: Duration | None = Field(default=None, description="Minimum event time between two pages for the same episode (upstream 'repeat' alerts closer than this are folded).")
    continue_: bool = Field(default=False, alias="continue", description="Keep matching sibling routes after this one matched.")
    routes: list[RouteConfig] = Field(default_factory=list, description="Child routes, tried in order.")

    @field_validator("matchers")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return _check_matchers(value)


class SilenceConfig(_Model):
    """Mutes matching alerts whose event time lies in [starts_at, ends_at) — planned load tests, batch jobs."""

    matchers: Matchers
    starts_at: datetime = Field(default=datetime(1970, 1, 1, tzinfo=UTC), description="Start, ISO 8601 (UTC if no offset).")
    ends_at: datetime = Field(description="Expiry, ISO 8601. Required: a silence always ends.")
    comment: str = Field(description="Why: shown in logs and metrics.")
    created_by: str | None = None

    @field_validator("matchers")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return _check_matchers(value)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _order(self) -> SilenceConfig:
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")
        if self.ends_at <= self.starts_at:
            raise ValueError("silence ends_at must be after starts_at")
        return self


class InhibitRuleConfig(_Model):
    """While a source alert fires, target alerts with equal values of ``equal`` are muted."""

    source_matchers: Matchers
    target_matchers: Matchers
    equal: list[str] = Field(default_factory=list, description="Labels that must be equal (and present) on source and target.")

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return _check_matchers(value)


def _default_inhibit_rules() -> list[InhibitRuleConfig]:
    return [InhibitRuleConfig(source_matchers=['scope="team"'], target_matchers=['scope=~"key|user|session"'], equal=["team"])]


def _default_receivers() -> list[ReceiverConfig]:
    return [
        ReceiverConfig(
            name="default",
            console=[ConsoleReceiverConfig()],
            pagerduty=[PagerDutyReceiverConfig(routing_key_env="SPENDWATCH_PAGERDUTY_ROUTING_KEY", skip_if_unset=True)],
            slack=[
                SlackReceiverConfig(bot_token_env="SPENDWATCH_SLACK_BOT_TOKEN", channel_env="SPENDWATCH_SLACK_CHANNEL", skip_if_unset=True),
                SlackReceiverConfig(webhook_url_env="SPENDWATCH_SLACK_WEBHOOK_URL", skip_if_unset=True),
            ],
        )
    ]


def _default_route() -> RouteConfig:
    return RouteConfig(
        receiver="default",
        group_by=[GROUP_BY_ALERT],
        group_wait=timedelta(seconds=10),
        group_interval=timedelta(minutes=1),
        repeat_interval=timedelta(hours=4),
    )


class PagingConfig(_Model):
    enabled: bool = Field(default=True, description="Run the pager in embedded mode (demo/worker).")
    consumer_group: str = Field(default="spendwatch-pager", description="Kafka consumer group of the pager (run one replica per group).")
    transactional_id: str = Field(default="spendwatch-pager", description="Kafka transactional id of the delivery log writer; a second pager with the same id fences the first.")
    route: RouteConfig = Field(default_factory=_default_route, description="Root of the routing tree; must name a receiver. Defaults: group per episode, group_wait 10s, group_interval 1m, repeat_interval 4h.")
    receivers: list[ReceiverConfig] = Field(default_factory=_default_receivers)
    silences: list[SilenceConfig] = Field(default_factory=list)
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=_default_inhibit_rules, description="Default: a team-level page mutes the pages of that team's keys, users and sessions.")
    severity: dict[str, Severity] = Field(default_factory=dict, description="detector name -> PagerDuty severity, overriding the detector's own.")
    links: dict[str, str] = Field(default_factory=dict, description="Link title -> URL template, formatted with the alert's labels, e.g. '{grafana}/d/spend?var-team={team}'.")
    source: str = Field(default="spendwatch", description="PagerDuty payload.source.")
    retry: RetryConfig = Field(default_factory=RetryConfig)
    log_retention: Duration = Field(default=timedelta(days=14), description="How long the delivery log remembers a resolved episode (event time) before forgetting it.")

    @model_validator(mode="after")
    def _receivers_exist(self) -> PagingConfig:
        if not self.route.receiver:
            raise ValueError("paging.route.receiver is required (the default route's receiver)")
        names = [r.name for r in self.receivers]
        if len(names) != len(set(names)):
            raise ValueError(f"receiver names must be unique, got {names}")
        missing: list[str] = []

        def walk(route: RouteConfig) -> None:
            if route.receiver and route.receiver not in names:
                missing.append(route.receiver)
            for child in route.routes:
                walk(child)

        walk(self.route)
        if missing:
            raise ValueError(f"routes refer to undefined receivers {sorted(set(missing))}; defined: {names}")
        return self


def env_value(name: str | None) -> str | None:
    """The value of an environment variable named in the config, or None."""
    return os.environ.get(name) or None if name else None
