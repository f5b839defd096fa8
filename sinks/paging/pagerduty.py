"""PagerDuty Events API v2: payloads and a small client over aiohttp.

One PagerDuty alert per group: ``dedup_key`` is the group's incident key (the episode's
own ``dedup_key`` when grouping per episode), so re-sending a trigger after a crash is
idempotent on PagerDuty's side, and the resolve closes exactly what the trigger opened.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from spendwatch.schemas.alert import Alert
from spendwatch.sinks.paging.config import PagerDutyReceiverConfig, PagingConfig, RetryConfig
from spendwatch.sinks.paging.grouping import IntegrationSpec
from spendwatch.sinks.paging.notification import (
    Notification, comparison, overshoot, owner, root_cause_text, truncate,
)
from spendwatch.sinks.paging.retry import PermanentError, RateLimiter, TransientError, parse_retry_after

SUMMARY_MAX = 1024
PAYLOAD_MAX_BYTES = 512 * 1024
DEDUP_KEY_MAX = 255


def summary(n: Notification) -> str:
    head = n.headline
    if len(n.firing) > 1:
        group = ", ".join(f"{k}={v}" for k, v in n.group_labels.items() if v) or "group"
        return truncate(f"[{len(n.firing)} alerts, {group}] {head.summary}", SUMMARY_MAX)
    return truncate(head.summary, SUMMARY_MAX)


def _alert_details(alert: Alert) -> dict[str, Any]:
    return {
        "what": alert.detector,
        "who": owner(alert),
        "how_much": comparison(alert),
        "observed": alert.observed,
        "expected": alert.expected,
        "unit": alert.unit,
        "overshoot": round(overshoot(alert), 2) if alert.expected else None,
        "episode_started_at": alert.episode_started_at.isoformat() if alert.episode_started_at else None,
        "fired_at": alert.fired_at.isoformat(),
        "root_cause": root_cause_text(alert, limit=10),
        "labels": dict(alert.labels),
        "dedup_key": alert.dedup_key,
    }


def trigger_event(n: Notification, routing_key: str, config: PagingConfig,
                  receiver: PagerDutyReceiverConfig | None = None) -> dict[str, Any]:
    """The Events v2 ``trigger`` for a firing notification."""
    head = n.headline
    details = _alert_details(head)
    details["notification_id"] = n.id
    if head.series:
        series = head.series[-24:]
        details["last_24h_spend_usd"] = " ".join(f"{float(p.spend_usd):.0f}" for p in series)
        details["last_24h_baseline_usd"] = " ".join("-" if p.baseline_usd is None else f"{float(p.baseline_usd):.0f}" for p in series)
    if len(n.firing) > 1:
        details["alerts"] = [_alert_details(a) for a in n.firing]
    event = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.incident_key[:DEDUP_KEY_MAX],
        "payload": {
            "summary": summary(n),
            "source": truncate(f"{config.source}/{head.scope}/{head.subject}", 255),
            "severity": n.top_severity.value,
            "timestamp": head.fired_at.isoformat(),
            "component": (receiver.component if receiver and receiver.component else head.detector),
            "group": head.labels.get("team") or ",".join(f"{k}={v}" for k, v in n.group_labels.items()),
            "class": (receiver.class_ if receiver and receiver.class_ else head.scope),
            "custom_details": details,
        },
        "client": "spendwatch",
        "links": [{"href": link.href, "text": link.text} for link in n.links],
    }
    return fit(event)


def resolve_event(n: Notification, routing_key: str) -> dict[str, Any]:
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": n.incident_key[:DEDUP_KEY_MAX]}


def fit(event: dict[str, Any]) -> dict[str, Any]:
    """Shrink custom_details until the event is under PagerDuty's 512 KB."""
    details = event["payload"]["custom_details"]
    for drop in ("alerts", "last_24h_baseline_usd", "last_24h_spend_usd", "labels", "root_cause"):
        if len(json.dumps(event).encode()) < PAYLOAD_MAX_BYTES:
            break
        if drop == "alerts" and details.get("alerts"):
            while details["alerts"] and len(json.dumps(event).encode()) >= PAYLOAD_MAX_BYTES:
                details["alerts"].pop()
            details["alerts_truncated"] = True
        else:
            details.pop(drop, None)
    return event


def events_for(n: Notification, routing_key: str, config: PagingConfig,
               receiver: PagerDutyReceiverConfig | None = None) -> list[dict[str, Any]]:
    """The events a notification becomes: a trigger while anything fires, a resolve when all recovered.

    A notification that only resolves some alerts of a still-firing group sends nothing:
    the PagerDuty alert stays open until the whole group has recovered. Episodes that fired
    and cleared before delivery become a trigger and then its resolve, so they are on record.
    """
    if n.firing:
        if set(n.announced.values()) == {"resolve"} and not n.cleared:
            return []
        return [trigger_event(n, routing_key, config, receiver)]
    if n.cleared:
        events = [trigger_event(n, routing_key, config, receiver)]
        if "resolve" in n.announced.values():
            events.append(resolve_event(n, routing_key))
        return events
    return [resolve_event(n, routing_key)]


class PagerDutyClient:
    """POSTs events to the enqueue URL; maps responses onto Transient/PermanentError."""

    def __init__(self, url: str, retry: RetryConfig, session: aiohttp.ClientSession | None = None):
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=retry.request_timeout.total_seconds())
        self._session = session
        self._own_session = session is None

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def send(self, event: dict[str, Any]) -> dict[str, Any]:
        session = await self._get_session()
        body = json.dumps(event).encode()
        try:
            async with session.post(self.url, data=body, headers={"Content-Type": "application/json"}) as resp:
                text = await resp.text()
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"PagerDuty unreachable: {exc!r}") from exc
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {"message": text[:500]}
        if status in (200, 201, 202):
            return data
        if status == 429:
            raise TransientError("PagerDuty rate limit (429)", retry_after)
        if status >= 500:
            raise TransientError(f"PagerDuty {status}", retry_after)
        errors = data.get("errors") or [data.get("message", text[:500])]
        raise PermanentError(f"PagerDuty rejected the event ({status}): {'; '.join(map(str, errors))}",
                             error_type=f"pagerduty_{status}")

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()


class PagerDutyIntegration:
    """A receiver's PagerDuty target: renders notifications into events and sends them, rate-limited per key."""

    kind = "pagerduty"
    _limiters: dict[str, RateLimiter] = {}

    def __init__(self, spec: IntegrationSpec, receiver: PagerDutyReceiverConfig, routing_key: str, config: PagingConfig):
        self.spec = spec
        self.receiver = receiver
        self.routing_key = routing_key
        self.config = config
        self.client = PagerDutyClient(receiver.url, config.retry)
        self.limiter = self._limiters.setdefault(f"{receiver.url}|{routing_key}", RateLimiter(receiver.rate_limit_per_minute))

    async def deliver(self, n: Notification, root: dict[str, Any] | None, recovering: bool) -> dict[str, Any] | None:
        """Send; idempotent by design (same dedup_key), so recovery simply re-sends."""
        for event in events_for(n, self.routing_key, self.config, self.receiver):
            await self.limiter.acquire()
            await self.client.send(event)
        return None

    async def close(self) -> None:
        await self.client.close()
