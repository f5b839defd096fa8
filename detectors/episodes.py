"""The episode lifecycle shared by every detector: one trigger, repeats, one resolve.

An episode starts when a detector first reports its condition abnormal (``trigger``),
re-notifies every ``repeat_interval`` of event time while the condition stays abnormal
(``repeat``), and ends once the condition has been normal for ``resolve_after``
(``resolve``). Flapping inside ``resolve_after`` stays one episode. Every notification
of an episode carries the same ``dedup_key``:
``"{detector}:{scope}:{subject}[:{episode}]:{start}"`` with ``start`` the episode's
first event time (ISO 8601, seconds, UTC).

Examples
--------
>>> book = EpisodeBook()
>>> t0 = 1_700_000_000.0
>>> [book.update("spend_spike", "", t, abnormal, repeat_s=3600, resolve_s=600)[0]
...  for t, abnormal in [(t0, True), (t0 + 60, True), (t0 + 3600, True), (t0 + 3700, False),
...                      (t0 + 3800, True), (t0 + 3900, False), (t0 + 4600, False)]]
['trigger', None, 'repeat', None, None, None, 'resolve']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(slots=True)
class Episode:
    started: float
    last_notified: float
    last_abnormal: float
    peak: float = 0.0
    notifications: int = 1


def episode_dedup_key(detector: str, scope: str, subject: str, episode: str, started: float) -> str:
    """The stable identity of one episode.

    >>> episode_dedup_key("session_burn", "key", "k1", "sess-9", 1_700_000_000)
    'session_burn:key:k1:sess-9:2023-11-14T22:13:20Z'
    """
    start = datetime.fromtimestamp(int(started), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    middle = f"{subject}:{episode}" if episode else subject
    return f"{detector}:{scope}:{middle}:{start}"


class EpisodeBook:
    """The active episodes of one subject, across its detectors."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active: dict[tuple[str, str], Episode] = {}

    def update(
        self, detector: str, episode: str, now: float, abnormal: bool, *, repeat_s: float, resolve_s: float,
        observed: float = 0.0,
    ) -> tuple[str | None, Episode | None]:
        """Feed one verdict; returns the action to notify (or None) and the episode it belongs to."""
        key = (detector, episode)
        current = self.active.get(key)
        if abnormal:
            if current is None:
                current = self.active[key] = Episode(now, now, now, observed)
                return "trigger", current
            current.last_abnormal = max(current.last_abnormal, now)
            if observed > current.peak:
                current.peak = observed
            if now - current.last_notified >= repeat_s:
                current.last_notified = now
                current.notifications += 1
                return "repeat", current
            return None, current
        if current is not None and now - current.last_abnormal >= resolve_s:
            del self.active[key]
            return "resolve", current
        return None, current

    def episodes_of(self, detector: str) -> list[str]:
        return [episode for (name, episode) in self.active if name == detector]
