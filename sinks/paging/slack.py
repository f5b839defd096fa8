"""Slack: a Block Kit page readable in five seconds, sent with slack-sdk.

What (header), who / how much / compared to what / how fast (fields), a 24-hour
sparkline of spend against baseline, the root cause and links, and a ``text`` fallback
for notifications and screen readers. The first notification of a group posts a
message; later ones reply in its thread and update it; the resolve turns it green.

Every message carries the notification id in Slack message metadata, so after a crash
the pager looks for it (conversations.history / conversations.replies) before posting
again: a message already posted is never posted twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from spendwatch.schemas.alert import Action, Alert, Severity
from spendwatch.sinks.paging.config import PagingConfig, SlackReceiverConfig
from spendwatch.sinks.paging.grouping import IntegrationSpec
from spendwatch.sinks.paging.notification import (
    Notification, comparison, fmt_value, overshoot, owner, root_cause_text, spend_sparklines, truncate,
)
from spendwatch.sinks.paging.retry import PermanentError, RateLimiter, TransientError, parse_retry_after

log = logging.getLogger(__name__)

MAX_BLOCKS = 50
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
MAX_FIELDS = 10
CONTEXT_ELEMENTS_MAX = 10
ACTION_ELEMENTS_MAX = 25
BUTTON_TEXT_MAX = 75
FALLBACK_TEXT_MAX = 3000
METADATA_EVENT = "spendwatch_notification"
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}

ICON = {Severity.critical: ":rotating_light:", Severity.error: ":red_circle:", Severity.warning: ":warning:", Severity.info: ":information_source:"}


def _md(text: str, limit: int = SECTION_TEXT_MAX) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": truncate(text, limit)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _md(text)}


def _title(alert: Alert) -> str:
    return alert.detector.replace("_", " ").capitalize()


def _how_fast(alert: Alert) -> str:
    rate = alert.details.get("burn_usd_per_hour")
    parts = []
    if alert.unit == "usd_per_hour":
        parts.append(fmt_value(alert.observed, "usd_per_hour"))
    elif isinstance(rate, int | float):
        parts.append(fmt_value(rate, "usd_per_hour"))
    elif alert.expected:
        parts.append(f"{overshoot(alert):.1f}x normal")
    if alert.episode_started_at:
        minutes = int((alert.fired_at - alert.episode_started_at) / timedelta(minutes=1))
        parts.append(f"for {minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"for {minutes}m")
    return ", ".join(parts) or "n/a"


def _sparkline_block(alert: Alert) -> dict[str, Any] | None:
    lines = spend_sparklines(alert)
    if lines is None:
        return None
    spend, base = lines
    hours = len(alert.series[-24:])
    text = f"*Last {hours}h* (same scale)\n```spend    {spend}  {fmt_value(alert.series[-1].spend_usd, 'usd')}"
    if base:
        text += f"\nbaseline {base}  {fmt_value(alert.series[-1].baseline_usd, 'usd')}"
    return _section(text + "```")


def _fields(alert: Alert, severity: Severity) -> dict[str, Any]:
    fields = [
        ("Who", owner(alert) + (f"\nuser {alert.labels['user']}" if alert.labels.get("user") and alert.scope != "user" else "")),
        ("How much", fmt_value(alert.observed, alert.unit)),
        ("Compared to", f"{fmt_value(alert.expected, alert.unit)} expected" if alert.expected is not None else "no baseline yet"),
        ("How fast", _how_fast(alert)),
        ("Severity", severity.value),
        ("Since", (alert.episode_started_at or alert.fired_at).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    return {"type": "section", "fields": [_md(f"*{k}*\n{v}", FIELD_TEXT_MAX) for k, v in fields][:MAX_FIELDS]}


def _links_block(n: Notification) -> dict[str, Any] | None:
    if not n.links:
        return None
    return {"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": truncate(link.text, BUTTON_TEXT_MAX)}, "url": link.href[:3000],
         "action_id": f"link_{i}"}
        for i, link in enumerate(n.links[:ACTION_ELEMENTS_MAX])
    ]}


def fallback_text(n: Notification) -> str:
    head = n.headline
    if n.fired_and_cleared:
        return truncate(f"[{n.top_severity.value}] Fired and cleared: {head.summary}", FALLBACK_TEXT_MAX)
    if n.status == "resolved":
        return truncate(f"Resolved: {head.summary}", FALLBACK_TEXT_MAX)
    more = f" (+{len(n.firing) - 1} more)" if len(n.firing) > 1 else ""
    prefix = "Still burning: " if n.is_repeat else ""
    return truncate(f"[{n.top_severity.value}] {prefix}{head.summary}{more}", FALLBACK_TEXT_MAX)


def blocks(n: Notification) -> list[dict[str, Any]]:
    """The message's blocks for the group's current state."""
    head = n.headline
    resolved = n.status == "resolved" and not n.fired_and_cleared
    icon = ":white_check_mark:" if resolved else ICON[n.top_severity]
    prefix = "Resolved: " if resolved else "Fired and cleared: " if n.fired_and_cleared else ""
    title = f"{icon} {prefix}{_title(head)} — {owner(head)}"
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, HEADER_MAX), "emoji": True}},
        _section(f"*{head.summary}*\n{comparison(head)}"),
        _fields(head, n.severity_of(head)),
    ]
    if (spark := _sparkline_block(head)) is not None:
        out.append(spark)
    if causes := root_cause_text(head):
        out.append(_section("*Root cause*\n" + "\n".join(f"• {c}" for c in causes)))
    others = [a for a in n.firing if a is not head]
    if others:
        out.append({"type": "divider"})
        room = MAX_BLOCKS - len(out) - 3
        for alert in others[:room]:
            out.append(_section(f"{ICON[n.severity_of(alert)]} *{_title(alert)}* — {owner(alert)}\n{comparison(alert)}"))
        if len(others) > room:
            out.append(_section(f"…and {len(others) - room} more alerts in this group"))
    if (links := _links_block(n)) is not None:
        out.append(links)
    context = [_md(f"`{head.detector}`"), _md(f"group {', '.join(f'{k}={v}' for k, v in n.group_labels.items())}"),
               _md(f"fired {head.fired_at:%H:%M UTC}")]
    out.append({"type": "context", "elements": context[:CONTEXT_ELEMENTS_MAX]})
    return out[:MAX_BLOCKS]


def reply_blocks(n: Notification) -> list[dict[str, Any]]:
    """The thread reply announcing what changed since the last notification."""
    lines = []
    for alert in n.cleared:
        lines.append(f"{ICON[n.severity_of(alert)]} *Fired and cleared* — {alert.summary}")
    cleared = {a.dedup_key for a in n.cleared}
    for alert in [*n.firing, *n.resolved]:
        action = n.announced.get(alert.dedup_key)
        if alert.dedup_key in cleared:
            continue
        if action == Action.resolve:
            lines.append(f":white_check_mark: *Resolved* — {owner(alert)}: {comparison(alert)}")
        elif action == Action.repeat:
            lines.append(f":repeat: *Still burning* — {owner(alert)}: {comparison(alert)}")
        elif action == Action.trigger:
            lines.append(f"{ICON[n.severity_of(alert)]} *New* — {alert.summary}")
    return [_section("\n".join(lines[:40]) or fallback_text(n))]


def metadata(n: Notification) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT, "event_payload": {"notification_id": n.id, "group_key": n.group_key}}


def _looks_like_id(channel: str) -> bool:
    """Slack conversation ids look like C0123ABCD (public), G... (private), D... (DM)."""
    return len(channel) >= 9 and channel[0] in "CGD" and channel.isalnum() and channel.isupper()


def _classify(exc: Exception) -> Exception:
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        retry_after = parse_retry_after(exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after"))
        if status == 429 or status >= 500 or error in TRANSIENT_ERRORS:
            return TransientError(f"Slack {status} {error or ''}".strip(), retry_after)
        return PermanentError(f"Slack rejected the message: {error or status}", error_type=f"slack_{error or status}")
    if isinstance(exc, aiohttp.ClientError | TimeoutError | SlackClientError):
        return TransientError(f"Slack unreachable: {exc!r}")
    return exc


class SlackIntegration:
    """Posts, threads and updates through the Web API with a bot token."""

    kind = "slack"
    _limiters: dict[str, RateLimiter] = {}

    def __init__(self, spec: IntegrationSpec, receiver: SlackReceiverConfig, token: str, channel: str, config: PagingConfig):
        self.spec = spec
        self.channel = channel
        self.channel_id = channel if _looks_like_id(channel) else None
        self.client = AsyncWebClient(token=token, base_url=receiver.api_url, retry_handlers=[],
                                     timeout=int(config.retry.request_timeout.total_seconds()))
        self.limiter = self._limiters.setdefault(f"{receiver.api_url}|{channel}", RateLimiter(receiver.rate_limit_per_minute))

    async def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return await getattr(self.client, method)(**kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped onto retry classes
            mapped = _classify(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def _find_posted(self, n: Notification, channel: str, thread_ts: str | None) -> dict[str, Any] | None:
        """The message this notification already posted before a crash, if any.

        The history API needs a channel id: configure ``channel: C0123...`` for the
        crash-window check; with a channel name it is skipped until a post reveals the id.
        """
        if not _looks_like_id(channel):
            if self.channel_id is None:
                log.warning("%s: channel %s is a name, not an id: cannot check for a message posted before a crash",
                            self.spec.id, channel)
                return None
            channel = self.channel_id
        cursor = None
        for _page in range(10):
            if thread_ts:
                resp = await self._call("conversations_replies", channel=channel, ts=thread_ts, include_all_metadata=True,
                                        limit=200, cursor=cursor)
            else:
                oldest = (n.created_at - timedelta(minutes=10)).timestamp()
                resp = await self._call("conversations_history", channel=channel, oldest=f"{oldest:.6f}",
                                        include_all_metadata=True, limit=200, cursor=cursor)
            for message in resp.get("messages", []):
                meta = message.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT and meta.get("event_payload", {}).get("notification_id") == n.id:
                    return message
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not resp.get("has_more") or not cursor:
                break
        return None

    async def _post(self, n: Notification, channel: str, text: str, blocks_: list[dict[str, Any]],
                    thread_ts: str | None, recovering: bool, broadcast: bool = False) -> tuple[str, str]:
        if recovering and (found := await self._find_posted(n, channel, thread_ts)) is not None:
            return self.channel_id or channel, found["ts"]
        await self.limiter.acquire()
        kwargs: dict[str, Any] = dict(channel=channel, text=text, blocks=blocks_, metadata=metadata(n), unfurl_links=False)
        if thread_ts:
            kwargs.update(thread_ts=thread_ts, reply_broadcast=broadcast)
        resp = await self._call("chat_postMessage", **kwargs)
        self.channel_id = resp["channel"]
        return resp["channel"], resp["ts"]

    async def deliver(self, n: Notification, root: dict[str, Any] | None, recovering: bool) -> dict[str, Any] | None:
        """Deliver ``n``; returns the group's open message {channel, ts}, or None once resolved."""
        text, body = fallback_text(n), blocks(n)
        if root is None:
            channel, ts = await self._post(n, self.channel, text, body, None, recovering)
            return {"channel": channel, "ts": ts} if n.status == "firing" else None
        channel, ts = root["channel"], root["ts"]
        broadcast = bool(n.new_keys) or n.is_repeat
        await self._post(n, channel, fallback_text(n), reply_blocks(n), ts, recovering, broadcast=broadcast)
        try:
            await self.limiter.acquire()
            await self._call("chat_update", channel=channel, ts=ts, text=text, blocks=body)
        except PermanentError:
            pass  # the original was deleted or is too old to edit; the thread reply carries the news
        return root if n.status == "firing" else None

    async def close(self) -> None:
        if self.client.session is not None:
            await self.client.session.close()


class SlackWebhookIntegration:
    """Incoming webhook: one message per notification (webhooks cannot update or thread)."""

    kind = "slack"

    def __init__(self, spec: IntegrationSpec, receiver: SlackReceiverConfig, url: str, config: PagingConfig):
        self.spec = spec
        self.client = AsyncWebhookClient(url, timeout=int(config.retry.request_timeout.total_seconds()), retry_handlers=[])
        self.limiter = RateLimiter(receiver.rate_limit_per_minute)

    async def deliver(self, n: Notification, root: dict[str, Any] | None, recovering: bool) -> dict[str, Any] | None:
        await self.limiter.acquire()
        try:
            resp = await self.client.send(text=fallback_text(n), blocks=blocks(n), unfurl_links=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"Slack webhook unreachable: {exc!r}") from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TransientError(f"Slack webhook {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After")))
        if resp.status_code != 200:
            raise PermanentError(f"Slack webhook rejected the message: {resp.status_code} {resp.body}", f"slack_{resp.body}")
        return None

    async def close(self) -> None:
        return None
