"""Local stand-ins for PagerDuty Events API v2 and the Slack Web API, on loopback ports.

They check what the real services check (field presence, enums, sizes, the bearer
token, Block Kit limits), answer 429/5xx on demand, and let tests *await* what arrived
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from spendwatch.broker import free_port

#: a well-formed (32 characters) Events v2 routing key for tests
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
PD_MAX_BYTES = 512 * 1024
SLACK_BLOCK_TYPES = {"section", "header", "divider", "context", "actions", "image", "rich_text", "input", "file", "video", "markdown"}


#: woken by every request to any fake, so one predicate may look at several servers
_waiters: set[asyncio.Event] = set()


class _FakeServer:
    def __init__(self) -> None:
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._failures: list[tuple[int, str | None]] = []
        self.request_log: list[tuple[float, str, int]] = []  # (monotonic time, path, status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> _FakeServer:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (429 adds Retry-After)."""
        self._failures.extend([(status, retry_after)] * times)

    async def _notify(self) -> None:
        for event in list(_waiters):
            event.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        """Wait until ``predicate()`` holds; re-checked after every request to any fake server."""
        async with asyncio.timeout(timeout):
            while not predicate():
                woken = asyncio.Event()
                _waiters.add(woken)
                try:
                    await woken.wait()
                finally:
                    _waiters.discard(woken)

    def _injected_failure(self) -> web.Response | None:
        if not self._failures:
            return None
        status, retry_after = self._failures.pop(0)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return self._failure_response(status, headers)

    def _failure_response(self, status: int, headers: dict[str, str]) -> web.Response:
        raise NotImplementedError


class FakePagerDuty(_FakeServer):
    """POST /v2/enqueue with the Events API v2 checks."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.open: set[str] = set()
        self.pages: list[str] = []  # dedup_keys, once per incident opened: what wakes a human
        self.resolutions: list[str] = []  # dedup_keys, once per incident resolved

    @property
    def enqueue_url(self) -> str:
        return f"{self.url}/v2/enqueue"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v2/enqueue", self._enqueue)
        return app

    def _failure_response(self, status: int, headers: dict[str, str]) -> web.Response:
        if status == 429:
            body = {"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}
        else:
            body = {"status": "error", "message": "Internal Server Error"}
        return web.json_response(body, status=status, headers=headers)

    @staticmethod
    def validate(raw: bytes) -> list[str]:
        if len(raw) > PD_MAX_BYTES:
            return [f"Event object is too large ({len(raw)} bytes > 512 KB)"]
        try:
            event = json.loads(raw)
        except ValueError:
            return ["Invalid JSON"]
        errors = []
        key = event.get("routing_key")
        if not isinstance(key, str) or len(key) != 32:
            errors.append("'routing_key' must be a 32 character string")
        action = event.get("event_action")
        if action not in PD_ACTIONS:
            errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
        dedup = event.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
            errors.append("'dedup_key' must be a string of at most 255 characters")
        if action in ("acknowledge", "resolve") and not dedup:
            errors.append("'dedup_key' is required for acknowledge and resolve events")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                return errors + ["'payload' is missing or not an object"]
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary:
                errors.append("'payload.summary' is missing or blank")
            elif len(summary) > 1024:
                errors.append("'payload.summary' must be at most 1024 characters")
            if not isinstance(payload.get("source"), str) or not payload.get("source"):
                errors.append("'payload.source' is missing or blank")
            if payload.get("severity") not in PD_SEVERITIES:
                errors.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
            for link in event.get("links", []):
                if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                    errors.append("'links' entries need an 'href'")
        return errors

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        failure = self._injected_failure()
        if failure is not None:
            self.request_log.append((time.monotonic(), request.path, failure.status))
            await self._notify()
            return failure
        errors = self.validate(raw)
        if errors:
            self.rejected.append({"raw": raw[:2000], "errors": errors})
            self.request_log.append((time.monotonic(), request.path, 400))
            await self._notify()
            return web.json_response({"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status=400)
        event = json.loads(raw)
        self.events.append(event)
        key = event.get("dedup_key") or f"generated-{len(self.events)}"
        if event["event_action"] == "trigger" and key not in self.open:  # a trigger on an open alert is deduplicated
            self.open.add(key)
            self.pages.append(key)
        elif event["event_action"] == "resolve" and key in self.open:
            self.open.discard(key)
            self.resolutions.append(key)
        self.request_log.append((time.monotonic(), request.path, 202))
        await self._notify()
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": key}, status=202)


class FakeSlack(_FakeServer):
    """chat.postMessage, chat.update, conversations.history / conversations.replies, with Block Kit checks."""

    def __init__(self, token: str = "xoxb-test-token", channels: dict[str, str] | None = None) -> None:
        super().__init__()
        self.token = token
        self.channels = channels or {"#spend-alerts": "C0SPEND01"}
        self.messages: list[dict[str, Any]] = []  # every posted message, replies included
        self.updates: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._ts = int(time.time() * 1_000_000)
        self._hang_posts_from: int | None = None
        self.hung = asyncio.Event()
        self._release = asyncio.Event()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def hang_on_post(self, nth: int) -> None:
        """From the ``nth`` chat.postMessage on (1-based), store the message but never answer (a crash mid-request)."""
        self._hang_posts_from = nth

    def release(self) -> None:
        self._hang_posts_from = None
        self._release.set()

    def app(self) -> web.Application:
        app = web.Application()
        for method in ("chat.postMessage", "chat.update", "conversations.history", "conversations.replies"):
            app.router.add_route("*", f"/api/{method}", self._handler(method))
        app.router.add_post("/services/T000/B000/secret", self._webhook)
        return app

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T000/B000/secret"

    async def _webhook(self, request: web.Request) -> web.Response:
        """Incoming webhooks answer plain text: 'ok', or an error name with a 4xx."""
        failure = self._injected_failure()
        if failure is not None:
            self.request_log.append((time.monotonic(), "webhook", failure.status))
            await self._notify()
            return failure
        body = await request.json()
        if not body.get("text"):
            return web.Response(text="no_text", status=400)
        if body.get("blocks") is not None and (reason := self.check_blocks(body["blocks"])):
            self.errors.append(reason)
            return web.Response(text="invalid_blocks", status=400)
        self.messages.append({"channel": "webhook", "ts": None, "text": body["text"], "blocks": body.get("blocks"),
                              "posted_blocks": body.get("blocks"), "metadata": None, "thread_ts": None, "reply_broadcast": False})
        self.request_log.append((time.monotonic(), "webhook", 200))
        await self._notify()
        return web.Response(text="ok")

    def _failure_response(self, status: int, headers: dict[str, str]) -> web.Response:
        if status == 429:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)
        return web.Response(text="<html>upstream connect error</html>", status=status, content_type="text/html", headers=headers)

    def _handler(self, method: str):
        async def handle(request: web.Request) -> web.Response:
            failure = self._injected_failure()
            if failure is not None:
                self.request_log.append((time.monotonic(), method, failure.status))
                await self._notify()
                return failure
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return self._error(method, "invalid_auth" if request.headers.get("Authorization") else "not_authed")
            args: dict[str, Any] = dict(request.query)
            if request.content_type == "application/json":
                args.update(await request.json())
            elif request.can_read_body:
                args.update(dict(await request.post()))
            response = await getattr(self, "_" + method.replace(".", "_"))(args)
            self.request_log.append((time.monotonic(), method, response.status))
            await self._notify()
            return response

        return handle

    def _error(self, method: str, error: str) -> web.Response:
        self.errors.append(f"{method}: {error}")
        return web.json_response({"ok": False, "error": error})

    def _channel_id(self, channel: str | None) -> str | None:
        if channel in self.channels.values():
            return channel
        return self.channels.get(channel or "")

    @staticmethod
    def check_blocks(blocks: Any) -> str | None:
        """None if valid, else the reason (what Slack reports as invalid_blocks)."""
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not isinstance(blocks, list) or len(blocks) > 50:
            return "blocks must be a list of at most 50"
        ids = set()
        for block in blocks:
            kind = block.get("type")
            if kind not in SLACK_BLOCK_TYPES:
                return f"unknown block type {kind}"
            if (bid := block.get("block_id")) is not None:
                if len(bid) > 255 or bid in ids:
                    return "block_id too long or duplicated"
                ids.add(bid)
            if kind == "header":
                text = block.get("text", {})
                if text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 150:
                    return "header text must be plain_text of 1..150 characters"
            if kind == "section":
                text, fields = block.get("text"), block.get("fields")
                if text is None and not fields:
                    return "section needs text or fields"
                if text is not None and not 0 < len(text.get("text", "")) <= 3000:
                    return "section text must be 1..3000 characters"
                if fields and (len(fields) > 10 or any(len(f.get("text", "")) > 2000 for f in fields)):
                    return "section fields: at most 10, each at most 2000 characters"
            if kind == "context" and not 0 < len(block.get("elements", [])) <= 10:
                return "context needs 1..10 elements"
            if kind == "actions":
                elements = block.get("elements", [])
                if not 0 < len(elements) <= 25:
                    return "actions needs 1..25 elements"
                for el in elements:
                    if el.get("type") == "button" and (len(el.get("text", {}).get("text", "")) > 75 or len(el.get("url", "")) > 3000):
                        return "button text at most 75, url at most 3000 characters"
        return None

    def _check_message(self, method: str, args: dict[str, Any]) -> web.Response | None:
        if self._channel_id(args.get("channel")) is None:
            return self._error(method, "channel_not_found")
        text, blocks = args.get("text"), args.get("blocks")
        if not text:
            return self._error(method, "no_text")  # stricter than Slack, which only warns: we require the fallback
        if len(text) > 40000:
            return self._error(method, "msg_too_long")
        if blocks is not None and (reason := self.check_blocks(blocks)):
            self.errors.append(reason)
            return self._error(method, "invalid_blocks")
        meta = args.get("metadata")
        if meta is not None:
            meta = json.loads(meta) if isinstance(meta, str) else meta
            if not isinstance(meta.get("event_type"), str) or not isinstance(meta.get("event_payload"), dict):
                return self._error(method, "invalid_metadata_format")
        return None

    async def _chat_postMessage(self, args: dict[str, Any]) -> web.Response:
        if (error := self._check_message("chat.postMessage", args)) is not None:
            return error
        self._ts += 100
        ts = f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"
        meta = args.get("metadata")
        message = {
            "channel": self._channel_id(args["channel"]), "ts": ts, "text": args["text"],
            "blocks": json.loads(args["blocks"]) if isinstance(args.get("blocks"), str) else args.get("blocks"),
            "metadata": json.loads(meta) if isinstance(meta, str) else meta,
            "thread_ts": args.get("thread_ts"), "reply_broadcast": args.get("reply_broadcast", False),
        }
        message["posted_blocks"] = message["blocks"]  # as first posted, before any chat.update
        self.messages.append(message)
        if self._hang_posts_from is not None and len(self.messages) >= self._hang_posts_from:
            self.hung.set()
            await self._notify()
            await self._release.wait()
        return web.json_response({"ok": True, "channel": message["channel"], "ts": ts,
                                  "message": {"text": message["text"], "ts": ts}})

    async def _chat_update(self, args: dict[str, Any]) -> web.Response:
        if (error := self._check_message("chat.update", args)) is not None:
            return error
        channel = self._channel_id(args["channel"])
        target = next((m for m in self.messages if m["channel"] == channel and m["ts"] == args.get("ts")), None)
        if target is None:
            return self._error("chat.update", "message_not_found")
        blocks = json.loads(args["blocks"]) if isinstance(args.get("blocks"), str) else args.get("blocks")
        target.update(text=args["text"], blocks=blocks)
        self.updates.append({"channel": channel, "ts": args["ts"], "text": args["text"], "blocks": blocks})
        return web.json_response({"ok": True, "channel": channel, "ts": args["ts"], "text": args["text"]})

    def _visible(self, message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
        out = {k: v for k, v in message.items() if k not in ("metadata", "channel", "posted_blocks")}
        if with_metadata and message.get("metadata"):
            out["metadata"] = message["metadata"]
        return out

    async def _conversations_history(self, args: dict[str, Any]) -> web.Response:
        channel = args.get("channel") if args.get("channel") in self.channels.values() else None  # ids only, like Slack
        if channel is None:
            return self._error("conversations.history", "channel_not_found")
        oldest = float(args.get("oldest") or 0)
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        found = [self._visible(m, with_meta) for m in reversed(self.messages)
                 if m["channel"] == channel and float(m["ts"]) >= oldest
                 and (m["thread_ts"] is None or m["reply_broadcast"])]
        return web.json_response({"ok": True, "messages": found, "has_more": False})

    async def _conversations_replies(self, args: dict[str, Any]) -> web.Response:
        channel = args.get("channel") if args.get("channel") in self.channels.values() else None  # ids only, like Slack
        if channel is None:
            return self._error("conversations.replies", "channel_not_found")
        ts = args.get("ts")
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        thread = [self._visible(m, with_meta) for m in self.messages
                  if m["channel"] == channel and (m["ts"] == ts or m["thread_ts"] == ts)]
        if not thread:
            return self._error("conversations.replies", "thread_not_found")
        return web.json_response({"ok": True, "messages": thread, "has_more": False})

    # -- helpers for assertions -------------------------------------------------------------
    def notification_ids(self) -> list[str]:
        return [m["metadata"]["event_payload"]["notification_id"] for m in self.messages if m.get("metadata")]

    def roots(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["thread_ts"] is None]


# -- alerts for tests --------------------------------------------------------------------------
def make_alert(dedup_key: str = "spike:key:k1:1", *, action: str = "trigger", minute: int = 0, team: str = "payments",
               scope: str = "key", subject: str = "k1", detector: str = "spend_spike", severity: str = "error",
               observed: float = 812.0, expected: float | None = 95.0, series: int = 24, **extra: Any):
    """An Alert as the detectors produce it, with a 24-point series and a root cause."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from spendwatch.schemas.alert import Alert

    fired = datetime(2026, 11, 20, 14, 0, tzinfo=UTC) + timedelta(minutes=minute)
    labels = {"team": team, "key_alias": f"{subject}-alias", "user": "dev@example.com"}
    labels.update(extra.pop("labels", {}))
    return Alert.model_validate({
        "action": action, "detector": detector, "scope": scope, "subject": subject, "fired_at": fired,
        "severity": severity, "summary": f"{scope} {subject} spent ${observed:,.0f} in the last hour, {observed / (expected or 1):.1f}x its baseline",
        "observed": observed, "expected": expected, "unit": "usd", "dedup_key": dedup_key,
        "episode_started_at": fired - timedelta(minutes=minute + 35), "labels": labels,
        "root_cause": [{"kind": "model", "name": "claude-opus-4", "cost_usd": Decimal("700.50"), "share": 0.86, "requests": 1200},
                       {"kind": "session", "name": "agent-run-42", "cost_usd": Decimal("90"), "share": 0.11}],
        "series": [{"start": fired - timedelta(hours=series - i), "spend_usd": Decimal(str(20 + (i * 7) % 30 + (700 if i == series - 1 else 0))),
                    "baseline_usd": Decimal("30")} for i in range(series)],
        **extra,
    })


async def produce(bootstrap: str, topic: str, alerts) -> None:
    """Produce Alerts (keyed by dedup_key) or raw bytes (a bad message) to ``topic``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for alert in alerts:
            value = alert if isinstance(alert, bytes) else alert.model_dump_json().encode()
            key = b"bad" if isinstance(alert, bytes) else alert.dedup_key.encode()
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()
