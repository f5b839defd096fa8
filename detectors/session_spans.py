"""Evidence from a subject's newest sessions: running sums per session and the spans over them.

cache_hit_drop and context_bloat count evidence in **sessions** (a session's calls share one
prompt, so they are one draw, not many). Each keeps, per recently active session, a list of
running sums followed by the session's first and last timestamps, least recently active
first (:func:`note_session`). :func:`newest_spans` then walks the newest session, the newest
two... up to :data:`RECENT_SESSIONS` active within :data:`LOOKBACK_S` -- minutes of a busy
key, hours of a sparse one -- and for each span gives the summed values, the same without
the session that strays the most (one session's own prompt is never the subject's trend)
and Kish's effective number of the others; :func:`span_tail` turns a mean excess over them
into a Bonferroni-corrected tail probability.

>>> recent = {}
>>> for session, ts, values in [("a", 0.0, (1.0, 5.0)), ("b", 60.0, (1.0, 1.0)),
...                             ("a", 120.0, (1.0, 5.0)), ("c", 180.0, (2.0, 2.0))]:
...     note_session(recent, session, ts, values)
>>> recent                                    # [requests, excess, first ts, last ts]
{'b': [1.0, 1.0, 60.0, 60.0], 'a': [2.0, 10.0, 0.0, 120.0], 'c': [2.0, 2.0, 180.0, 180.0]}
>>> for span in newest_spans(recent, 200.0, weight=0, strays=lambda sums: sums[1]):
...     print(span.count, span.since, span.totals, span.rest, round(span.effective, 2))
1 180.0 (2.0, 2.0) (0.0, 0.0) 0.0
2 0.0 (4.0, 12.0) (2.0, 2.0) 1.0
3 0.0 (5.0, 13.0) (3.0, 3.0) 1.8
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from spendwatch.detectors.evidence import normal_tail

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

#: The newest sessions the evidence is looked for in (the newest one, the newest two... this many)...
RECENT_SESSIONS = 24
#: ...active within this long: hours on a sparse key, minutes on a busy one.
LOOKBACK_S = 86_400
#: Below this, the others' summed squared weight is a rounding residue of leaving the top session out.
_RESIDUE = 1e-18


def span_text(sessions: int, seconds: float) -> str:
    """What a span covers, for summaries: ``'3 sessions (40 min)'``, or ``'120 min'`` for a window.

    >>> span_text(1, 300), span_text(4, 9000), span_text(0, 7200)
    ('session (5 min)', '4 sessions (2.5 h)', '2.0 h')
    """
    time = f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
    if not sessions:
        return time
    return f"{'session' if sessions == 1 else f'{sessions} sessions'} ({time})"


def note_session(recent: dict[str, list[float]], session: str, ts: float, values: Sequence[float]) -> None:
    """Add one request's ``values`` to ``session``'s running sums in ``recent`` (kept least recently active first).

    A session's entry is its sums followed by its first and last timestamps; beyond
    :data:`RECENT_SESSIONS` the least recently active session is forgotten.

    >>> recent = {}
    >>> for n in range(30):
    ...     note_session(recent, f"s{n}", float(n), (1.0,))
    >>> len(recent), next(iter(recent)), recent["s29"]
    (24, 's6', [1.0, 29.0, 29.0])
    """
    sums = recent.pop(session, None)
    if sums is None:
        sums = [0.0] * len(values) + [ts, ts]
    recent[session] = sums  # re-inserted last: the dict stays in least-recently-active order
    for i, value in enumerate(values):
        sums[i] += value
    sums[-1] = ts
    if len(recent) > RECENT_SESSIONS:
        del recent[next(iter(recent))]


class SessionSpan(NamedTuple):
    """The newest ``count`` sessions, the earliest of them first active at ``since``."""

    count: int
    since: float
    totals: tuple[float, ...]  # each running sum, over the span's sessions
    rest: tuple[float, ...]  # the same without the session that strays the most (when leaving one out)
    effective: float  # Kish's effective number of those other sessions, by their weight


def newest_spans(recent: dict[str, list[float]], now: float, *, weight: int, strays: Callable[[list[float]], float],
                 leave_out: bool = True, scale: float = 1.0) -> Iterator[SessionSpan]:
    """The newest session, the newest two... active within :data:`LOOKBACK_S` of ``now``, as spans.

    Parameters
    ----------
    recent
        Session -> running sums then first and last timestamps, least recently active
        first (see :func:`note_session`).
    now
        The time scored; sessions last active more than a day before are not evidence.
    weight
        Index of the sum each session is weighed by (requests, expected tokens...).
    strays
        How far a session strays in the direction looked for; the session with the highest
        value so far is left out of ``rest`` and of the effective number.
    leave_out
        Leave that session out (with ``False``, ``rest`` equals ``totals``).
    scale
        Weights are multiplied by this (keep them near 1: their squares are summed).

    >>> recent = {"a": [3.0, 0.1, 0.0, 10.0], "b": [3.0, 0.9, 20.0, 30.0], "c": [3.0, 0.2, 40.0, 50.0]}
    >>> [(s.count, round(s.rest[1], 6), s.effective)
    ...  for s in newest_spans(recent, 60.0, weight=0, strays=lambda x: x[1])]    # "b" is left out from 2 on
    [(1, 0.0, 0.0), (2, 0.2, 1.0), (3, 0.3, 2.0)]
    >>> [s.count for s in newest_spans(recent, 86_450.0, weight=0, strays=lambda x: x[1])]   # a day after "b"
    [1]
    """
    totals: list[float] = []
    top: list[float] = []
    top_score = -math.inf
    w = w2 = 0.0
    since = now
    oldest = now - LOOKBACK_S
    for j, sums in enumerate(reversed(recent.values()), start=1):
        if sums[-1] < oldest:
            break
        if not totals:
            totals = [0.0] * (len(sums) - 2)
            top = [0.0] * len(totals)
        for i in range(len(totals)):
            totals[i] += sums[i]
        since = min(since, sums[-2])
        unit = sums[weight] * scale
        w += unit
        w2 += unit * unit
        if leave_out and (score := strays(sums)) > top_score:
            top_score, top = score, sums[:len(totals)]
        top_w = top[weight] * scale
        rest_w, rest_w2 = w - top_w, w2 - top_w * top_w
        effective = rest_w * rest_w / rest_w2 if rest_w2 > _RESIDUE else 0.0
        yield SessionSpan(j, since, tuple(totals), tuple(t - s for t, s in zip(totals, top, strict=True)), effective)


def span_tail(excess: float, effective: float, variance: float, looks: int) -> float:
    """Bonferroni-corrected chance that ``effective`` sessions straying ``variance`` reach a mean ``excess``.

    The one-sided normal tail at ``excess x sqrt(effective / variance)``, times ``looks``
    (the spans looked at); 0.0 when nothing is known to stray (``variance`` 0).

    >>> f"{span_tail(0.3, 4.0, 0.01, 24):.2g}", span_tail(0.3, 4.0, 0.0, 24)    # 6 sigma, 24 looks
    ('2.4e-08', 0.0)
    >>> round(span_tail(0.1, 4.0, 0.01, 24), 3)                                     # 2 sigma
    0.546
    """
    return normal_tail(excess * math.sqrt(effective / variance)) * looks if variance > 0 else 0.0
