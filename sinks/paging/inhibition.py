"""Inhibition: a firing alert (the source) mutes related alerts (the targets).

The default rule: a team-level page mutes the pages of that team's keys, users and
sessions, so the owner gets one page about the team rather than one per key.
A source never mutes a target of higher severity: a team's week-long budget warning
must not hide an error-severity page about one of its keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spendwatch.sinks.paging.config import InhibitRuleConfig
from spendwatch.sinks.paging.matchers import Matcher, matches_all

_SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def _outranks(target: Mapping[str, str], source: Mapping[str, str]) -> bool:
    """True if ``target`` is more severe than ``source`` (unknown severities rank as info).

    >>> _outranks({"severity": "error"}, {"severity": "warning"}), _outranks({"severity": "warning"}, {"severity": "warning"})
    (True, False)
    """
    return _SEVERITY_RANK.get(target.get("severity", ""), 3) < _SEVERITY_RANK.get(source.get("severity", ""), 3)


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    @classmethod
    def from_config(cls, config: InhibitRuleConfig) -> InhibitRule:
        return cls(
            tuple(Matcher.parse(m) for m in config.source_matchers),
            tuple(Matcher.parse(m) for m in config.target_matchers),
            tuple(config.equal),
        )

    def inhibits(self, source: Mapping[str, str], target: Mapping[str, str]) -> bool:
        """True if firing ``source`` mutes ``target``.

        Examples
        --------
        >>> rule = InhibitRule((Matcher.parse('scope="team"'),), (Matcher.parse('scope="key"'),), ("team",))
        >>> rule.inhibits({"scope": "team", "team": "a"}, {"scope": "key", "team": "a"})
        True
        >>> rule.inhibits({"scope": "team", "team": "a"}, {"scope": "key", "team": "b"})
        False
        """
        if not (matches_all(self.source, source) and matches_all(self.target, target)):
            return False
        return all(source.get(n) is not None and source.get(n) == target.get(n) for n in self.equal)


class Inhibitor:
    """Judges targets against the currently firing alerts (dedup_key -> labels)."""

    def __init__(self, rules: Sequence[InhibitRuleConfig]):
        self.rules = [InhibitRule.from_config(r) for r in rules]

    def inhibited_by(self, target: Mapping[str, str], firing: Mapping[str, Mapping[str, str]]) -> str | None:
        """The dedup_key of a firing alert that mutes ``target``, or None."""
        me = target.get("dedup_key")
        for rule in self.rules:
            for key, source in firing.items():
                if key != me and not _outranks(target, source) and rule.inhibits(source, target):
                    return key
        return None
