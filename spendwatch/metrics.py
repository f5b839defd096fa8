"""The service's own Prometheus metrics, defined once; every component imports from here.

Served on ``/metrics`` by the worker's and the ingest service's web servers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter(
    "spendwatch_events_in_total", "Gateway messages received, by source and result (ok, dead_letter).",
    ["source", "result"], registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "spendwatch_dead_letters_total", "Messages sent to the dead-letter topic, by stage and error type.",
    ["stage", "error_type"], registry=REGISTRY,
)
REDELIVERED = Counter(
    "spendwatch_redelivered_total",
    "Messages handed to the worker again within one consumer generation (after Faust's seek back to the "
    "committed offset) and skipped, because their output is already in the open transaction.",
    ["topic"], registry=REGISTRY,
)
DUPLICATES = Counter(
    "spendwatch_duplicate_records_total",
    "Records dropped by the parse stage because their id came before on the same raw partition "
    "(streams.dedup_window_records): a gateway's or client's retry.",
    ["topic"], registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "spendwatch_consumer_lag_messages", "Messages between a consumer's position and the partition end.",
    ["group", "topic", "partition"], registry=REGISTRY,
)
DETECTOR_LATENCY = Histogram(
    "spendwatch_detector_batch_seconds", "Time to run the detectors over one batch of events.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "spendwatch_stream_commit_seconds",
    "Time of one stream commit by phase: sends (the parse stage's writes acknowledged), flush (hot state and "
    "alerts serialised and sent), transaction (offsets committed with everything sent).",
    ["phase"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=REGISTRY,
)
ALERTS_EMITTED = Counter(
    "spendwatch_alerts_total", "Alert notifications produced, by detector and action.",
    ["detector", "action"], registry=REGISTRY,
)
PAGES_SENT = Counter(
    "spendwatch_pages_sent_total", "Notifications delivered, by receiver kind (pagerduty, slack, console).",
    ["receiver"], registry=REGISTRY,
)
PAGES_FAILED = Counter(
    "spendwatch_pages_failed_total", "Notifications that failed for good (dead-lettered), by receiver kind and reason.",
    ["receiver", "reason"], registry=REGISTRY,
)
CLICKHOUSE_WRITE_SECONDS = Histogram(
    "spendwatch_clickhouse_write_seconds", "Time per ClickHouse batch insert, by table.",
    ["table"], registry=REGISTRY,
)
CLICKHOUSE_BACKLOG = Gauge(
    "spendwatch_clickhouse_backlog_rows", "Rows buffered for ClickHouse and not yet written.", registry=REGISTRY,
)
CLICKHOUSE_ROWS = Counter(
    "spendwatch_clickhouse_rows_written_total", "Rows written to ClickHouse, by table.", ["table"], registry=REGISTRY,
)
INGEST_REQUESTS = Counter(
    "spendwatch_ingest_requests_total", "HTTP ingest requests, by endpoint and status code.",
    ["endpoint", "status"], registry=REGISTRY,
)
