"""``spendwatch ingest``: the HTTP service gateways send their events and traces to.

Endpoints
---------
``POST /v1/events``
    One JSON object, a JSON array or NDJSON (LiteLLM ``generic_api`` in each of its
    ``log_format`` settings), optionally gzip-encoded, in any format
    :func:`spendwatch.schemas.adapters.parse_message` reads. Each record is parsed on
    its own: good ones are written to the ``raw`` topic as canonical JSON keyed by the
    key scope, bad ones to the ``dead_letters`` topic with their reason (prompt and
    response text removed). The answer lists the per-record errors and comes only once
    Kafka has acknowledged everything (``acks=all``).
``POST /v1/traces``
    OTLP/HTTP (protobuf or JSON). GenAI spans become events; other spans are ignored;
    spans that fail to parse are dead-lettered and reported as ``partial_success``.
``GET /metrics``, ``/healthz``, ``/readyz``
    Prometheus metrics, liveness, readiness (ready once connected to Kafka).

Status codes: 200 accepted (possibly with per-record errors), 400 unusable body or
every record rejected, 401 missing or unknown bearer token, 413 body or record count
over the limit, 415 unsupported content type or encoding, 503 Kafka unavailable
(retry; ``Retry-After`` is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson
from aiohttp import web

from spendwatch.kafka_security import client_options
from spendwatch.metrics import DEAD_LETTERS, EVENTS_IN, INGEST_REQUESTS
from spendwatch.schemas.adapters import dumps, parse_message
from spendwatch.schemas.adapters.otel import events_from_otlp
from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.event_window import split_by_window, within_window
from spendwatch.schemas.outcome import OutcomeEvent
from spendwatch.schemas.redact import redact_bytes
from spendwatch.web import HealthChecks, add_observability_routes, redact_unparsed_request_logs

from . import github, otlp
from .auth import ANONYMOUS, GatewayTokens
from .bodies import (
    EVENT_CONTENT_TYPES, MAX_INVALID_LINE_BYTES, BodyError, InflightBytes, Lease, Record, check_content_length,
    decode_content, media_type, parse_cost_estimate, split_records,
)
from .producer import DurableProducer, KafkaUnavailable, Message, default_transactional_id
from .redact import redact_record, truncate

if TYPE_CHECKING:  # pragma: no cover - the CLI imports the full configuration only when it runs
    from spendwatch.config import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
GITHUB_PATH = "/v1/github"
TRACES_PATH = "/v1/traces"
#: Most per-record errors listed in one response; the rest are counted.
MAX_ERRORS_LISTED = 100
RETRY_AFTER_S = "5"
#: Bytes a protobuf OTLP body may take once decoded to dicts, per byte (charged to the in-flight budget).
PROTOBUF_PARSE_FACTOR = 24
#: Records parsed between two turns of the event loop.
PARSE_SLICE = 200

CanonicalRecord = GatewayEvent | OutcomeEvent


class Unauthorized(Exception):
    pass


@dataclass
class Outcome:
    """What one request produced: records to write and errors to report."""

    records: list[CanonicalRecord] = field(default_factory=list)
    dead_letters: list[tuple[ParseError, bytes]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


class IngestService:
    """The request handlers, independent of how the process starts (CLI, tests, load test).

    Parameters
    ----------
    settings
        The whole configuration: ``ingest`` for limits, ``kafka.topics`` for where to
        write, ``adapters`` for parsing.
    producer
        The durable Kafka writer; the service does not start or stop it.
    tokens
        Accepted bearer tokens; ``None`` accepts anonymous requests
        (``ingest.allow_unauthenticated``).
    """

    def __init__(self, settings: Settings, producer: DurableProducer, tokens: GatewayTokens | None) -> None:
        self.settings = settings
        self.config = settings.ingest
        self.topics = settings.kafka.topics
        self.producer = producer
        self.tokens = tokens
        self.inflight = InflightBytes(self.config.max_inflight_body_bytes)

    # --- application ------------------------------------------------------------------

    def make_app(self, checks: HealthChecks | None = None) -> web.Application:
        """The aiohttp application with the ingest and observability routes."""
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[_count_requests])
        app.router.add_post(EVENTS_PATH, self.handle_events)
        app.router.add_post(TRACES_PATH, self.handle_traces)
        app.router.add_post(GITHUB_PATH, self.handle_github)
        checks = add_observability_routes(app, checks)
        checks.add_readiness_check(
            "kafka", lambda: (True, "ok") if self.producer.connected.is_set() else (False, "not connected to Kafka yet")
        )
        return app

    # --- shared request steps -----------------------------------------------------------

    def authenticate(self, request: web.Request) -> str:
        if self.tokens is None:
            return ANONYMOUS
        gateway = self.tokens.gateway_for(request.headers.get("Authorization"))
        if gateway is None:
            raise Unauthorized()
        return gateway

    async def read_body(self, request: web.Request, lease: Lease) -> bytes:
        """The body, inflated; every byte held is charged to ``lease`` (503 once the in-flight budget is spent)."""
        check_content_length(request.content_length, self.config.max_body_bytes)
        body = bytearray()
        async for chunk in request.content.iter_chunked(65_536):
            lease.charge(len(chunk))
            body += chunk
            if len(body) > self.config.max_body_bytes:
                raise BodyError(413, "body_too_large", f"body exceeds the limit of {self.config.max_body_bytes} bytes")
        raw = bytes(body)
        del body
        decoded = decode_content(raw, request.headers.get("Content-Encoding"), self.config.max_decompressed_bytes, lease)
        if decoded is not raw:
            lease.release(len(raw))  # inflated: the compressed bytes are dropped on return
        return decoded

    def stamp(self, record: CanonicalRecord, gateway: str) -> CanonicalRecord:
        if self.config.stamp_gateway and gateway != ANONYMOUS and isinstance(record, GatewayEvent):
            return record.model_copy(update={"gateway": gateway})
        return record

    def messages(self, outcome: Outcome, gateway: str) -> list[Message]:
        out = [
            Message(self.topics.raw, dumps(record), _key(record))
            for record in outcome.records
        ]
        limit = self.config.dead_letter_max_original_bytes
        for error, original in outcome.dead_letters:
            letter = error.to_dead_letter(truncate(original, limit), stage="ingest")
            if error.gateway is None:
                letter = letter.model_copy(update={"reason": f"{letter.reason} (from gateway {gateway})"})
            else:
                letter = letter.model_copy(update={"reason": f"{letter.reason} (from gateway {gateway}, format {error.gateway})"})
            out.append(Message(self.topics.dead_letters, letter.model_dump_json().encode(), gateway.encode()))
        return out

    async def write(self, outcome: Outcome, gateway: str) -> None:
        await self.producer.send_all(self.messages(outcome, gateway))
        events = sum(1 for r in outcome.records if isinstance(r, GatewayEvent))
        if outcome.records:
            EVENTS_IN.labels(gateway, "ok").inc(len(outcome.records))
        if outcome.dead_letters:
            EVENTS_IN.labels(gateway, "dead_letter").inc(len(outcome.dead_letters))
            for error, _ in outcome.dead_letters:
                DEAD_LETTERS.labels("ingest", error.error_type).inc()
        log.debug("gateway %s: %d records (%d events), %d dead letters",
                  gateway, len(outcome.records), events, len(outcome.dead_letters))

    # --- POST /v1/events ----------------------------------------------------------------

    async def handle_events(self, request: web.Request) -> web.Response:
        with self.inflight.lease() as lease:  # held until answered: the body, its records, their parse
            return await self._handle_events(request, lease)

    async def _handle_events(self, request: web.Request, lease: Lease) -> web.Response:
        gateway, body = ANONYMOUS, None
        try:
            gateway = self.authenticate(request)
            kind = media_type(request.headers.get("Content-Type"))
            if kind not in EVENT_CONTENT_TYPES:
                raise BodyError(415, "unsupported_media_type",
                                f"Content-Type {kind!r} is not supported; send JSON or NDJSON")
            body = await self.read_body(request, lease)
            lease.charge(parse_cost_estimate(body))
            records = split_records(body, self.config.max_records_per_request)
            lease.release(len(body))  # the records are all that is kept of it
            del body
        except Unauthorized:
            return _json_error(401, "unauthorized", "missing or unknown bearer token", auth_challenge=True)
        except BodyError as exc:
            if exc.status == 400:
                await self.dead_letter_body(exc, body, gateway)
            return _json_error(exc.status, exc.error, exc.detail, headers=_retry_after(exc))

        outcome = await self.parse_records_cooperatively(records, gateway)
        try:
            await self.write(outcome, gateway)
        except KafkaUnavailable as exc:
            log.warning("gateway %s: %s", gateway, exc)
            return _json_error(503, "kafka_unavailable", f"{exc}; nothing is guaranteed written, retry",
                               headers={"Retry-After": RETRY_AFTER_S})

        rejected = len({e["index"] for e in outcome.errors})
        result = {
            "records": len(records),
            "accepted": len(records) - rejected,
            "rejected": rejected,
            "events": len(outcome.records),
            "errors": outcome.errors[:MAX_ERRORS_LISTED],
        }
        if len(outcome.errors) > MAX_ERRORS_LISTED:
            result["errors_not_listed"] = len(outcome.errors) - MAX_ERRORS_LISTED
        if rejected == len(records):
            result["error"] = "every record was rejected (each is in the dead-letter topic with its reason)"
            return web.json_response(result, status=400, dumps=_dumps)
        return web.json_response(result, status=200, dumps=_dumps)

    async def dead_letter_body(self, error: BodyError, body: bytes | None, gateway: str) -> None:
        """A malformed body as a whole (empty, a JSON scalar, bad gzip) is dead-lettered too, best effort:
        its inflated bytes redacted (never the gzip bytes, which would hide text from the scrubber)."""
        if body and len(body) > MAX_INVALID_LINE_BYTES:  # bounds the scrubbing; a cut string is blanked to its end
            body = body[:MAX_INVALID_LINE_BYTES]
        original = truncate(redact_bytes(body)[0], self.config.dead_letter_max_original_bytes) if body else b""
        outcome = Outcome(dead_letters=[(ParseError(error.error, error.detail), original)])
        try:
            await self.write(outcome, gateway)
        except KafkaUnavailable as exc:
            log.warning("gateway %s: a malformed body was not dead-lettered: %s", gateway, exc)

    async def parse_records_cooperatively(self, records: list[Record], gateway: str) -> Outcome:
        """:meth:`parse_records`, giving the event loop a turn every :data:`PARSE_SLICE` records so a
        large batch never stalls other requests or the health checks."""
        outcome = Outcome()
        for start in range(0, len(records), PARSE_SLICE):
            if start:
                await asyncio.sleep(0)
            self.parse_records(records[start:start + PARSE_SLICE], gateway, outcome)
        return outcome

    def parse_records(self, records: list[Record], gateway: str, outcome: Outcome | None = None) -> Outcome:
        """Parse each record on its own: canonical records for the good, dead letters and errors for the bad."""
        outcome = outcome if outcome is not None else Outcome()
        window, now, late = self.settings.adapters.event_time, time.time(), []
        for record in records:
            if record.error is not None:
                self._reject(outcome, record, record.error)
                continue
            try:
                parsed = parse_message(record.value, self.settings.adapters)
            except ParseError as exc:
                self._reject(outcome, record, exc)
                continue
            parsed = within_window(parsed, window, now, late)
            for error in late:
                self._reject(outcome, record, error)
            late.clear()
            outcome.records.extend(self.stamp(r, gateway) for r in parsed)
        return outcome

    def _reject(self, outcome: Outcome, record: Record, error: ParseError) -> None:
        original = redact_record(record.value, record.raw)
        outcome.dead_letters.append((error, original))
        entry: dict[str, Any] = {"index": record.index}
        if record.line is not None:
            entry["line"] = record.line
        entry.update(error_type=error.error_type, field=error.field, reason=error.reason)
        if error.gateway:
            entry["format"] = error.gateway
        outcome.errors.append(entry)

    # --- POST /v1/github ----------------------------------------------------------------

    async def handle_github(self, request: web.Request) -> web.Response:
        """A GitHub webhook delivery (streams/ingest/github.py): signed by the shared secret, not a bearer token."""
        config = self.config.github
        secret = os.environ.get(config.secret_env, "")
        if not secret:
            return _json_error(404, "github_receiver_off", f"set {config.secret_env} to the webhook's secret")
        with self.inflight.lease() as lease:
            try:
                body = await self.read_body(request, lease)
            except BodyError as exc:
                return _json_error(exc.status, exc.error, exc.detail, headers=_retry_after(exc))
            return await self._github_delivery(request, body, config, secret)

    async def _github_delivery(self, request: web.Request, body: bytes, config: Any, secret: str) -> web.Response:
        if not github.signature_ok(secret, body, request.headers.get(github.SIGNATURE_HEADER)):
            return _json_error(401, "bad_signature", f"{github.SIGNATURE_HEADER} does not match the body")
        event = request.headers.get(github.EVENT_HEADER, "")
        if event != "pull_request":
            return web.json_response({"ignored": f"event {event or '(none)'}", "outcomes": 0}, dumps=_dumps)
        try:
            outcome = github.merged_pr_outcome(orjson.loads(body), config)
        except orjson.JSONDecodeError as exc:
            return _json_error(400, "invalid_json", f"not valid JSON: {exc}")
        except ParseError as exc:
            return _json_error(400, exc.error_type, exc.reason)
        if outcome is None:
            return web.json_response({"ignored": "not a merged pull request", "outcomes": 0}, dumps=_dumps)
        try:
            await self.write(Outcome(records=[outcome]), "github")
        except KafkaUnavailable as exc:
            return _json_error(503, "kafka_unavailable", f"{exc}; GitHub redelivers on request",
                               headers={"Retry-After": RETRY_AFTER_S})
        return web.json_response({"outcomes": 1, "outcome_id": outcome.outcome_id}, dumps=_dumps)

    # --- POST /v1/traces ----------------------------------------------------------------

    async def handle_traces(self, request: web.Request) -> web.Response:
        with self.inflight.lease() as lease:
            return await self._handle_traces(request, lease)

    async def _handle_traces(self, request: web.Request, lease: Lease) -> web.Response:
        kind = media_type(request.headers.get("Content-Type"))
        reply_as = kind if kind in otlp.TRACE_CONTENT_TYPES else otlp.JSON
        gateway, body = ANONYMOUS, None
        try:
            gateway = self.authenticate(request)
            if kind not in otlp.TRACE_CONTENT_TYPES:
                otlp.decode_request(b"", kind)  # raises the 415
            body = await self.read_body(request, lease)
            lease.charge(parse_cost_estimate(body) if kind == otlp.JSON else PROTOBUF_PARSE_FACTOR * len(body))
            export = otlp.decode_request(body, kind)
            spans = otlp.count_spans(export)
            if spans > self.config.max_records_per_request:
                raise BodyError(413, "too_many_records",
                                f"{spans} spans exceed the limit of {self.config.max_records_per_request} per request")
        except Unauthorized:
            return _otlp_error(reply_as, 401, "missing or unknown bearer token", auth_challenge=True)
        except BodyError as exc:
            if exc.status == 400:
                await self.dead_letter_body(exc, body, gateway)
            return _otlp_error(reply_as, exc.status, exc.detail, headers=_retry_after(exc))

        errors: list[ParseError] = []
        outcome = Outcome()
        try:
            events = events_from_otlp(export, self.settings.adapters, errors)
        except ParseError as exc:
            return _otlp_error(reply_as, 400, str(exc))
        events, late = split_by_window(events, self.settings.adapters.event_time, time.time())
        outcome.records.extend(self.stamp(e, gateway) for e in events)
        for exc in errors:
            span = otlp.span_at(export, exc.field)
            original = redact_record(span if span is not None else export, b"")
            outcome.dead_letters.append((exc, original))
        for event, exc in late:  # the canonical event names the span and carries no text
            outcome.dead_letters.append((exc, dumps(event)))
            errors.append(exc)
        try:
            await self.write(outcome, gateway)
        except KafkaUnavailable as exc:
            log.warning("gateway %s: %s", gateway, exc)
            return _otlp_error(reply_as, 503, f"{exc}; retry", headers={"Retry-After": RETRY_AFTER_S})
        message = "; ".join(str(e) for e in errors[:5])
        if len(errors) > 5:
            message += f"; and {len(errors) - 5} more"
        body = otlp.encode_response(reply_as, rejected_spans=len(errors), error_message=message)
        return web.Response(body=body, status=200, content_type=reply_as)


def _key(record: CanonicalRecord) -> bytes | None:
    value = record.scope_value("key")
    return value.encode("utf-8") if value else None


def _retry_after(exc: BodyError) -> dict[str, str] | None:
    return {"Retry-After": RETRY_AFTER_S} if exc.status == 503 else None


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_error(status: int, error: str, detail: str, *, auth_challenge: bool = False,
                headers: dict[str, str] | None = None) -> web.Response:
    headers = dict(headers or {})
    if auth_challenge:
        headers["WWW-Authenticate"] = 'Bearer realm="spendwatch-ingest"'
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers, dumps=_dumps)


def _otlp_error(media: str, status: int, message: str, *, auth_challenge: bool = False,
                headers: dict[str, str] | None = None) -> web.Response:
    headers = dict(headers or {})
    if auth_challenge:
        headers["WWW-Authenticate"] = 'Bearer realm="spendwatch-ingest"'
    body = otlp.encode_status(media, otlp.GRPC_CODE.get(status, 2), message)
    return web.Response(body=body, status=status, content_type=media, headers=headers)


@web.middleware
async def _count_requests(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404/405/413...
        if request.path in (EVENTS_PATH, TRACES_PATH, GITHUB_PATH):
            INGEST_REQUESTS.labels(request.path, str(exc.status)).inc()
        raise
    except Exception:  # a bug: answered and counted like any request, the body never logged
        log.exception("unexpected error handling %s %s (body not logged)", request.method, request.path)
        response = _json_error(500, "internal_error", "unexpected error; the request was not processed, retry later")
    if request.path in (EVENTS_PATH, TRACES_PATH, GITHUB_PATH):
        INGEST_REQUESTS.labels(request.path, str(response.status)).inc()
    return response


# --- running it ---------------------------------------------------------------------------


@dataclass
class RunningIngest:
    """A started ingest service: its URL, and how to stop it."""

    service: IngestService
    runner: web.AppRunner
    producer: DurableProducer
    host: str
    port: int
    connect_task: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self.connect_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.connect_task
        await self.runner.cleanup()
        await self.producer.stop()


async def serve(service: IngestService, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``service``'s application on ``host:port`` (0: a free port); the runner and the port."""
    # Bodies are inflated by decode_content, which bounds the inflated size (aiohttp would not). A request
    # aiohttp cannot parse (a header over max_header_bytes) is logged without its headers: a bearer token.
    redact_unparsed_request_logs()
    limit = service.config.max_header_bytes
    runner = web.AppRunner(service.make_app(), access_log=None, auto_decompress=False,
                           max_line_size=limit, max_field_size=limit)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]


async def start_ingest(
    settings: Settings, bootstrap_servers: str, tokens: GatewayTokens | None, *, wait_ready: bool = True,
) -> RunningIngest:
    """Start the HTTP server on ``settings.ingest.host:port`` (port 0: a free one) and connect to Kafka.

    The server answers (``/healthz``, ``503`` on ``/readyz``) while Kafka is still being
    reached; ``wait_ready`` waits for the connection before returning.
    """
    producer_config = settings.ingest.producer
    producer = DurableProducer(bootstrap_servers, producer_config,
                               client_options=client_options(settings.kafka.security))
    service = IngestService(settings, producer, tokens)
    runner, port = await serve(service, settings.ingest.host, settings.ingest.port)
    if producer_config.transactional:
        producer.transactional_id = producer_config.transactional_id or default_transactional_id(
            producer_config.transactional_id_prefix, port)
    connect_task = asyncio.create_task(producer.start())
    running = RunningIngest(service, runner, producer, settings.ingest.host, port, connect_task)
    if wait_ready:
        await connect_task
    return running


def load_tokens(settings: Settings) -> GatewayTokens | None:
    """The configured tokens; ``None`` when unauthenticated access is allowed and none is set."""
    tokens = GatewayTokens.from_environment(settings.ingest)
    if len(tokens) == 0:
        if settings.ingest.allow_unauthenticated:
            return None
        raise click.ClickException(
            f"no ingest token configured: set {settings.ingest.tokens_env}='gateway-name=<token>[,...]' "
            "(or ingest.token_env_vars in the config file); for local development only, "
            "ingest.allow_unauthenticated: true"
        )
    return tokens


def unauthenticated_warning(settings: Settings, url: str) -> str:
    """What ``spendwatch ingest`` says, loudly, when it serves without a token."""
    return (f"WARNING: NO AUTHENTICATION. spendwatch ingest accepts any request on {url}: "
            f"{settings.ingest.tokens_env} holds no token and ingest.allow_unauthenticated is true, so anyone who "
            f"can reach this port can write spend events. Set {settings.ingest.tokens_env}='gateway-name=<token>' "
            "before exposing it beyond this host.")


async def _serve(settings: Settings, bootstrap_servers: str, tokens: GatewayTokens | None) -> None:
    running = await start_ingest(settings, bootstrap_servers, tokens, wait_ready=False)
    auth = f"{len(tokens)} gateway token(s)" if tokens else "NO authentication"
    click.echo(f"spendwatch ingest on {running.url} ({EVENTS_PATH}, {TRACES_PATH}; {auth}) -> Kafka {bootstrap_servers}")
    if tokens is None:
        warning = unauthenticated_warning(settings, running.url)
        click.secho(warning, fg="yellow", bold=True, err=True)
        log.warning(warning)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        click.echo("spendwatch ingest: stopping (flushing Kafka writes)")
        await running.stop()


@click.command("ingest")
@click.option("--config", "-c", "config_path", type=click.Path(exists=True, dir_okay=False), envvar="SPENDWATCH_CONFIG",
              help="spendwatch YAML config (env SPENDWATCH_CONFIG). Default: built-in defaults.")
@click.option("--host", default=None, help="Bind address (overrides ingest.host).")
@click.option("--port", default=None, type=int, help="Listen port (overrides ingest.port).")
def ingest(config_path: str | None, host: str | None, port: int | None) -> None:
    """Run the HTTP ingest service: POST /v1/events (JSON, arrays, NDJSON) and /v1/traces (OTLP/HTTP)."""
    from spendwatch.broker import create_topics, start_for_role
    from spendwatch.config import ConfigError, load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update=overrides)})
    tokens = load_tokens(settings)

    broker = None
    bootstrap = settings.kafka.bootstrap_servers
    if bootstrap is None:
        broker = start_for_role(Path(settings.data_dir) / "kafka", "ingest")
        bootstrap = broker.bootstrap_servers
        click.echo(f"kafka.bootstrap_servers is unset: started the embedded broker on {bootstrap}")
    try:
        topics = settings.kafka.topics
        try:
            asyncio.run(create_topics(bootstrap, {topics.raw: settings.streams.partitions,
                                                  topics.dead_letters: settings.streams.partitions},
                                      replication_factor=settings.streams.replication_factor,
                                      client_options=client_options(settings.kafka.security)))
        except Exception as exc:  # a managed cluster may forbid topic creation; the topics may already exist
            log.warning("could not create topics %s, %s (%s); assuming they exist", topics.raw, topics.dead_letters, exc)
        asyncio.run(_serve(settings, bootstrap, tokens))
    finally:
        if broker is not None:
            broker.stop()
