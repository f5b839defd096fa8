"""Lag metrics: how far each assigned partition's reads are behind its high watermark, after each commit."""

from __future__ import annotations

from typing import Any

from spendwatch import metrics
from spendwatch.streams import faust_internals


def report_lag(app: Any) -> None:
    """Set ``spendwatch_consumer_lag`` for every partition assigned to ``app``'s consumer (best effort)."""
    consumer = app.consumer
    group = app.conf.id
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
            position = faust_internals.read_offset(consumer, tp)
        except Exception:  # noqa: BLE001 - lag is best effort
            continue
        if highwater is not None and position is not None:
            metrics.CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(max(0, highwater - position - 1))
