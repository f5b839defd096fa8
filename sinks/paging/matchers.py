"""Alertmanager-style label matchers: ``team="payments"``, ``severity=~"critical|error"``, ``user!="ci-bot"``.

An alert is matched on its *labels*: the alert's own ``labels`` plus its fields
``alertname``/``detector``, ``scope``, ``subject``, ``severity``, ``action``, ``unit`` and
``dedup_key`` (see :func:`alert_labels`). A missing label matches as the empty string,
as in Alertmanager.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from spendwatch.schemas.alert import Alert

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s]*))\s*$')


@dataclass(frozen=True)
class Matcher:
    """One ``name op value`` condition on an alert's labels.

    Examples
    --------
    >>> m = Matcher.parse('team=~"pay.*"')
    >>> m.matches({"team": "payments"}), m.matches({"team": "search"})
    (True, False)
    >>> Matcher.parse('user!=""').matches({})
    False
    """

    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text)
        if not m:
            raise ValueError(f'invalid matcher {text!r}: expected name=value, name!=value, name=~"regex" or name!~"regex"')
        name, op, quoted, bare = m.groups()
        value = quoted.replace('\\"', '"') if quoted is not None else bare
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from exc
        return cls(name, op, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def alert_labels(alert: Alert) -> dict[str, str]:
    """The label set routes, silences and inhibition rules match on."""
    labels = dict(alert.labels)
    labels.update(
        alertname=alert.detector,
        detector=alert.detector,
        scope=alert.scope,
        subject=alert.subject,
        severity=alert.severity.value,
        action=alert.action.value,
        unit=alert.unit,
        dedup_key=alert.dedup_key,
    )
    labels.setdefault(alert.scope, alert.subject)
    return labels
