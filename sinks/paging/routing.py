"""The routing tree: which receiver(s) an alert goes to, and with which grouping and timing.

Same semantics as Alertmanager: depth-first, children tried in order, the deepest
matching route wins; ``continue: true`` keeps matching siblings; a node that matches but
whose children do not is itself the match. Unset fields inherit from the parent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from spendwatch.sinks.paging.config import GROUP_BY_ALERT, RouteConfig
from spendwatch.sinks.paging.matchers import Matcher, matches_all

ROOT_DEFAULTS = dict(
    group_by=(GROUP_BY_ALERT,),
    group_wait=timedelta(seconds=10),
    group_interval=timedelta(minutes=1),
    repeat_interval=timedelta(hours=4),
)


@dataclass(frozen=True)
class Route:
    """A route with everything inherited resolved. ``id`` is its position in the tree, e.g. ``0.2``."""

    id: str
    receiver: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    continue_: bool
    children: tuple[Route, ...]

    @classmethod
    def from_config(cls, config: RouteConfig, parent: Route | None = None, id: str = "0") -> Route:
        def pick(name: str):
            own = getattr(config, name)
            if own is not None:
                return tuple(own) if name == "group_by" else own
            return getattr(parent, name) if parent else ROOT_DEFAULTS[name]

        node = cls(
            id=id,
            receiver=config.receiver or (parent.receiver if parent else ""),
            matchers=tuple(Matcher.parse(m) for m in config.matchers),
            group_by=pick("group_by"),
            group_wait=pick("group_wait"),
            group_interval=pick("group_interval"),
            repeat_interval=pick("repeat_interval"),
            continue_=config.continue_,
            children=(),
        )
        children = tuple(cls.from_config(c, node, f"{id}.{i}") for i, c in enumerate(config.routes))
        return cls(**{**node.__dict__, "children": children})

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes (usually one) an alert with ``labels`` is sent to.

        Examples
        --------
        >>> from spendwatch.sinks.paging.config import RouteConfig
        >>> tree = Route.from_config(RouteConfig(receiver="ops", routes=[
        ...     RouteConfig(receiver="payments", matchers=['team="payments"'])]))
        >>> [r.receiver for r in tree.match({"team": "payments"})], [r.receiver for r in tree.match({"team": "x"})]
        (['payments'], ['ops'])
        """
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.children:
            hits = child.match(labels)
            found.extend(hits)
            if hits and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The label values that identify the alert's group under this route."""
        if GROUP_BY_ALERT in self.group_by:
            return {"dedup_key": labels.get("dedup_key", "")}
        return {name: labels.get(name, "") for name in self.group_by}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """Stable id of the alert's group: route id, receiver and group label values."""
        group = self.group_labels(labels)
        text = self.id + "|" + self.receiver + "|" + "|".join(f"{k}={v}" for k, v in sorted(group.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:32]
