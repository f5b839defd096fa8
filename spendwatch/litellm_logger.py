"""A LiteLLM ``CustomLogger`` that sends every call to ``spendwatch ingest``: for the plain ``litellm`` SDK.

LiteLLM's own ``generic_api`` callback needs the proxy's install (``litellm-enterprise``) and
schedules its posts on an event loop, so a synchronous ``litellm.completion`` outside one raises
``RuntimeError: no running event loop``. This logger works with both ``completion`` and
``acompletion`` (and with the proxy): LiteLLM hands it each call's ``StandardLoggingPayload``
from its sync or async hook, it drops the prompt and response text, and one background thread
posts batches to ``POST /v1/events`` with the bearer token. Nothing blocks the caller; a batch
the ingest service refused with 5xx or could not be reached for is retried.

Usage (docs/ingest.md, "LiteLLM SDK")::

    import litellm
    from spendwatch.litellm_logger import SpendwatchLogger

    litellm.callbacks = [SpendwatchLogger(endpoint="http://127.0.0.1:8787/v1/events", token="...",
                                          team="search", user="search-agent")]

Without arguments the endpoint and token come from ``SPENDWATCH_INGEST_URL`` and
``SPENDWATCH_INGEST_TOKEN``.
"""

from __future__ import annotations

import atexit
import gzip
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from litellm.integrations.custom_logger import CustomLogger

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://127.0.0.1:8787/v1/events"
ENDPOINT_ENV = "SPENDWATCH_INGEST_URL"
TOKEN_ENV = "SPENDWATCH_INGEST_TOKEN"
#: Prompt and completion text: never leaves the process.
TEXT_FIELDS = ("messages", "response", "model_parameters")
#: HTTP statuses worth retrying: the ingest service says so (503 + Retry-After) or a proxy in between is busy.
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class DeliveryStats:
    """What the logger has done so far (``SpendwatchLogger.stats``)."""

    queued: int = 0
    sent: int = 0
    dropped: int = 0


class SpendwatchLogger(CustomLogger):
    """Posts each LiteLLM call's ``StandardLoggingPayload`` to spendwatch's ingest service.

    Parameters
    ----------
    endpoint
        The ingest URL (``.../v1/events``); default ``$SPENDWATCH_INGEST_URL`` or ``http://127.0.0.1:8787/v1/events``.
    token
        The bearer token of this gateway in ``SPENDWATCH_INGEST_TOKENS``; default ``$SPENDWATCH_INGEST_TOKEN``
        (none for an ingest service started without tokens).
    user, team, key_alias
        Who pays when the call itself does not say: the SDK has no virtual key, so without the proxy's
        ``metadata.user_api_key_*`` (or a per-call ``user=`` / ``metadata=``) these fill them in.
    batch_size, flush_interval_s
        A batch is posted when it has ``batch_size`` calls or its oldest call waited ``flush_interval_s``.
    max_attempts, timeout_s
        Attempts per batch on connection errors and 5xx, and the HTTP timeout of each.
    max_queue
        Calls kept in memory while the ingest service is unreachable; beyond that the oldest are dropped
        (counted in ``stats.dropped``, logged).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        user: str | None = None,
        team: str | None = None,
        key_alias: str | None = None,
        batch_size: int = 200,
        flush_interval_s: float = 1.0,
        max_attempts: int = 5,
        timeout_s: float = 10.0,
        max_queue: int = 100_000,
    ) -> None:
        super().__init__()
        self.endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        self._token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.defaults = {k: v for k, v in (("user_api_key_user_id", user), ("user_api_key_team_id", team),
                                           ("user_api_key_alias", key_alias)) if v}
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.stats = DeliveryStats()
        self._queue: deque[dict[str, Any]] = deque(maxlen=max_queue)
        self._in_flight = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._flush_requested = False
        atexit.register(self.close)

    # ------------------------------------------------------------------ LiteLLM's hooks (sync and async)

    def log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102 - LiteLLM's signature
        self._enqueue(kwargs)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102
        self._enqueue(kwargs)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102
        self._enqueue(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102
        self._enqueue(kwargs)

    # ------------------------------------------------------------------ public

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Post what is queued now and wait until it is delivered (or dropped); ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            self._flush_requested = True
            self._changed.notify_all()
            return self._changed.wait_for(lambda: not self._queue and not self._in_flight,
                                          timeout=max(0.0, deadline - time.monotonic()))

    def wait_handled(self, count: int, timeout_s: float = 30.0) -> bool:
        """Block until ``count`` calls in all were delivered or dropped (see ``stats``); ``False`` on timeout.

        LiteLLM calls the hooks from its own thread pool (``completion``) or logging worker
        (``acompletion``) a moment after the call returns, so :meth:`flush` right after a call may
        not see it yet; at exit the logger flushes by itself, after LiteLLM's thread pool finished.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self.stats.sent + self.stats.dropped >= count, timeout=timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (at most ``timeout_s``), then stop the sender thread. Called at exit."""
        if self._closed:
            return
        self.flush(timeout_s)
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    # ------------------------------------------------------------------ internals

    def _enqueue(self, kwargs: dict[str, Any]) -> None:
        payload = kwargs.get("standard_logging_object")
        if not isinstance(payload, dict):
            return  # not a model call LiteLLM builds a payload for (e.g. a pass-through health check)
        caller = (payload.get("model_parameters") or {}).get("user")  # the OpenAI `user=` of the call
        payload = {k: v for k, v in payload.items() if k not in TEXT_FIELDS}
        if caller and not payload.get("end_user"):
            payload["end_user"] = caller
        if self.defaults:
            metadata = dict(payload.get("metadata") or {})
            for name, value in self.defaults.items():
                if not metadata.get(name) and not (name == "user_api_key_user_id" and payload.get("end_user")):
                    # a call's own user= wins over the logger's default
                    metadata[name] = value
            payload["metadata"] = metadata
        with self._changed:
            if len(self._queue) == self._queue.maxlen:
                self.stats.dropped += 1
            self._queue.append(payload)
            self.stats.queued += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="spendwatch-litellm-logger", daemon=True)
                self._thread.start()
            if len(self._queue) >= self.batch_size:
                self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._closed or self._flush_requested or len(self._queue) >= self.batch_size,
                    timeout=self.flush_interval_s)
                self._flush_requested = bool(self._queue) and self._flush_requested
                if not self._queue:
                    if self._closed:
                        return
                    continue
                batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                self._in_flight = len(batch)
            delivered = self._post(batch)
            with self._changed:
                self._in_flight = 0
                if delivered:
                    self.stats.sent += len(batch)
                else:
                    self.stats.dropped += len(batch)
                self._changed.notify_all()

    def _post(self, batch: list[dict[str, Any]]) -> bool:
        body = gzip.compress(orjson.dumps(batch, default=str, option=orjson.OPT_NON_STR_KEYS), compresslevel=5)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        delay = 0.5
        for attempt in range(1, self.max_attempts + 1):
            request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    _warn_rejected(answer.read())
                return True
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRYABLE:
                    log.error("spendwatch ingest refused %d LiteLLM calls: HTTP %d %s", len(batch), exc.code,
                              exc.read()[:300].decode(errors="replace"))
                    return False
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = str(getattr(exc, "reason", exc))
            if attempt < self.max_attempts:
                time.sleep(delay)  # backing off between attempts, on the sender thread only
                delay = min(delay * 2, 10.0)
        log.error("spendwatch ingest unreachable at %s after %d attempts (%s): %d LiteLLM calls dropped",
                  self.endpoint, self.max_attempts, reason, len(batch))
        return False


def _warn_rejected(answer: bytes) -> None:
    """The ingest service accepts a batch and lists the records it dead-lettered: say so, once per batch."""
    try:
        summary = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return
    if isinstance(summary, dict) and summary.get("rejected"):
        first = (summary.get("errors") or [{}])[0]
        log.warning("spendwatch ingest rejected %s of %s LiteLLM calls (dead-lettered), e.g. %s at %s: %s",
                    summary["rejected"], summary.get("records"), first.get("error_type"), first.get("field"),
                    first.get("reason"))


def _from_environment() -> SpendwatchLogger:
    """The instance the LiteLLM proxy loads by name: configured from ``SPENDWATCH_INGEST_URL`` / ``_TOKEN``."""
    return SpendwatchLogger()


#: For the proxy's config.yaml: ``litellm_settings: {callbacks: ["spendwatch.litellm_logger.spendwatch_logger"]}``.
spendwatch_logger = _from_environment()
