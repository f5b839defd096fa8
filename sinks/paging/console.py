"""Console / file receiver for the embedded mode: one readable line plus details, and/or JSONL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from spendwatch.sinks.paging.config import ConsoleReceiverConfig
from spendwatch.sinks.paging.grouping import IntegrationSpec
from spendwatch.sinks.paging.notification import Notification, comparison, owner, root_cause_text, spend_sparklines


def render_text(n: Notification) -> str:
    """``[CRITICAL] PAGE  <summary>`` then indented who / how much / root cause / sparkline lines."""
    head = n.headline
    if n.fired_and_cleared:
        tag = "PAGE"
    elif n.status == "resolved":
        tag = "RESOLVED"
    elif n.is_repeat:
        tag = "REPEAT"
    else:
        tag = "PAGE"
    lines = [f"[{n.top_severity.value.upper()}] {tag:<8} {head.summary}"]
    lines.append(f"    who: {owner(head)}   how much: {comparison(head)}   detector: {head.detector}")
    if causes := root_cause_text(head):
        lines.append("    root cause: " + "; ".join(causes))
    if (spark := spend_sparklines(head)) is not None:
        lines.append(f"    24h spend    {spark[0]}")
        if spark[1]:
            lines.append(f"    24h baseline {spark[1]}")
    for alert in n.cleared:
        ended = next((r.fired_at for r in n.resolved if r.dedup_key == alert.dedup_key), None)
        lines.append(f"    {'also: ' + owner(alert) + ' ' + alert.detector + ' ' if alert is not head else ''}fired and cleared"
                     + (f" (resolved {ended:%Y-%m-%d %H:%M} UTC)" if ended else "") + " before it could be delivered")
    for alert in n.firing:
        if alert is not head:
            lines.append(f"    also: {owner(alert)} {alert.detector}: {comparison(alert)}")
    for link in n.links:
        lines.append(f"    {link.text}: {link.href}")
    return "\n".join(lines)


def record(n: Notification) -> dict[str, Any]:
    """The JSONL line: the notification with its status, ids and alerts."""
    return {"notification_id": n.id, "status": n.status, "receiver": n.receiver, "integration": n.integration,
            **json.loads(n.model_dump_json(exclude={"id"}))}


class ConsoleIntegration:
    kind = "console"

    def __init__(self, spec: IntegrationSpec, receiver: ConsoleReceiverConfig, stream: TextIO | None = None):
        self.spec = spec
        self.receiver = receiver
        self.stream = stream

    def _already_written(self, path: Path, notification_id: str) -> bool:
        if not path.exists():
            return False
        needle = f'"notification_id": "{notification_id}"'
        with path.open() as f:
            return any(needle in line for line in f)

    async def deliver(self, n: Notification, root: dict[str, Any] | None, recovering: bool) -> dict[str, Any] | None:
        """Print and/or append; after a crash a line already in the file is not written again."""
        path = self.receiver.path
        if path is not None and not (recovering and self._already_written(path, n.id)):
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(json.dumps(record(n)) + "\n")
        if self.receiver.stdout:
            stream = self.stream or sys.stdout
            print(render_text(n), file=stream, flush=True)
        return None

    async def close(self) -> None:
        return None
