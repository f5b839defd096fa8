"""The real gateway clients the ingest tests drive: LiteLLM's generic_api logging callback and the
OpenTelemetry SDK's OTLP/HTTP exporter (shared by tests/test_ingest_*.py)."""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM's bundled prices: no network at import

from collections.abc import Iterator

import litellm
from litellm.integrations.generic_api.generic_api_callback import GenericAPILogger
from litellm.litellm_core_utils import litellm_logging, logging_callback_manager
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult


def proxy_metadata(key: str, alias: str, user: str, team: str) -> dict:
    """What the LiteLLM proxy puts in ``metadata`` for a request made with a virtual key."""
    return {"user_api_key_hash": key, "user_api_key_alias": alias, "user_api_key_user_id": user,
            "user_api_key_team_id": team, "user_api_key_org_id": "org-1"}


def _forget_generic_api_loggers() -> None:
    litellm_logging._in_memory_loggers[:] = [
        c for c in litellm_logging._in_memory_loggers if not isinstance(c, GenericAPILogger)]
    logging_callback_manager._generic_api_logger_cache.clear()


#: LiteLLM's module-level callback lists (it copies ``callbacks`` into the others on each call).
_CALLBACK_LISTS = ("callbacks", "success_callback", "failure_callback", "_async_success_callback",
                   "_async_failure_callback")


def fresh_litellm_callbacks() -> Iterator[None]:
    """Fixture body: fresh LiteLLM callback state for a test, the previous state restored after."""
    saved = {name: list(getattr(litellm, name)) for name in _CALLBACK_LISTS}
    saved_settings = dict(litellm.callback_settings)
    _forget_generic_api_loggers()
    yield
    for name, value in saved.items():
        getattr(litellm, name)[:] = value
    litellm.callback_settings.clear()
    litellm.callback_settings.update(saved_settings)
    _forget_generic_api_loggers()


def configure_generic_api(name: str, endpoint: str, token: str, log_format: str) -> None:
    """What a proxy config.yaml with ``callbacks: [name]`` and ``callback_settings: {name: ...}`` sets up."""
    litellm.callback_settings[name] = {
        "callback_type": "generic_api", "endpoint": endpoint,
        "headers": {"Authorization": f"Bearer {token}"}, "log_format": log_format,
    }
    litellm.logging_callback_manager.add_litellm_callback(name)


def generic_api_loggers() -> list[GenericAPILogger]:
    found = [c for c in litellm_logging._in_memory_loggers if isinstance(c, GenericAPILogger)]
    found += [c for c in logging_callback_manager._generic_api_logger_cache.values() if isinstance(c, GenericAPILogger)]
    return found


async def flush_litellm(expected_payloads: int) -> GenericAPILogger:
    """Send LiteLLM's pending batch now; returns once the ingest service has answered.

    ``acompletion`` hands its success logging to a task that enqueues it on LiteLLM's
    logging worker: await those tasks, then the worker, and every payload is in the
    logger's batch; ``flush_queue`` then POSTs it.
    """
    helpers = [t for t in asyncio.all_tasks()
               if getattr(t.get_coro(), "__qualname__", "") == "_client_async_logging_helper"]
    await asyncio.gather(*helpers)
    await GLOBAL_LOGGING_WORKER.flush()
    (logger,) = generic_api_loggers()
    assert len(logger.log_queue) == expected_payloads
    await logger.flush_queue()
    return logger


class RecordingExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, remembering each export's result (what the receiver answered)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[SpanExportResult] = []

    def export(self, spans):  # type: ignore[override]
        result = super().export(spans)
        self.results.append(result)
        return result
