"""Silences: matchers plus a time window during which matching alerts are not paged.

A silence is judged against the alert's event time (``fired_at``), not the wall clock,
so replaying the alerts topic after a restart takes the same decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from spendwatch.sinks.paging.config import SilenceConfig
from spendwatch.sinks.paging.matchers import Matcher, matches_all


@dataclass(frozen=True)
class Silence:
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    comment: str

    @classmethod
    def from_config(cls, config: SilenceConfig) -> Silence:
        return cls(tuple(Matcher.parse(m) for m in config.matchers), config.starts_at, config.ends_at, config.comment)

    def mutes(self, labels: Mapping[str, str], at: datetime) -> bool:
        """True if the silence is active at ``at`` and matches ``labels``.

        Examples
        --------
        >>> from datetime import UTC, datetime
        >>> s = Silence((Matcher.parse('team="batch"'),), datetime(2026, 1, 1, tzinfo=UTC),
        ...             datetime(2026, 1, 2, tzinfo=UTC), "nightly backfill")
        >>> s.mutes({"team": "batch"}, datetime(2026, 1, 1, 12, tzinfo=UTC))
        True
        >>> s.mutes({"team": "batch"}, datetime(2026, 1, 2, tzinfo=UTC))
        False
        """
        return self.starts_at <= at < self.ends_at and matches_all(self.matchers, labels)


class Silencer:
    def __init__(self, silences: Sequence[SilenceConfig]):
        self.silences = [Silence.from_config(s) for s in silences]

    def silenced_by(self, labels: Mapping[str, str], at: datetime) -> Silence | None:
        return next((s for s in self.silences if s.mutes(labels, at)), None)
