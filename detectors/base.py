"""The detector protocol: what every detector module implements.

A detector is one class, river-style: it holds its own small state, ``learn_one``
updates it with one record, ``score_one`` says what is abnormal right now. It never
does I/O, never reads the wall clock and never draws random numbers, so replaying the
same records (the backtest) gives the same pages as the stream.

The engine (:mod:`spendwatch.detectors.engine`) owns everything around it: routing
records to subjects, flattening a record once into an :class:`Observation`, the shared
spend baseline and top contributors (:class:`Context`), the trigger/repeat/resolve
lifecycle (:mod:`spendwatch.detectors.episodes`) and building the :class:`Alert`.

Per record the engine calls ``learn_one(obs, ctx)`` then ``score_one(ctx, now, obs)``
(learning first, so a threshold crossing is seen the moment it happens); on each tick
it calls ``score_one(ctx, now, None)``. ``ctx.normal_findings`` says whether findings
that are not abnormal are wanted at all (only while the subject has an active episode). A detector that must not learn from the
anomalies it flags keeps the points to learn in a buffer and learns them only once
they are known to be normal (see :mod:`spendwatch.detectors.burn_rate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from spendwatch.detectors.snapshot import restore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from spendwatch.detectors.baseline import SpendBaseline
    from spendwatch.detectors.config import BaselineConfig, DetectorSettings
    from spendwatch.detectors.contributors import Contributors

MICROS = 1_000_000


def usd(micros: float) -> str:
    """Format micro-dollars as dollars for summaries.

    >>> usd(1_234_560_000), usd(4_200_000), usd(1_000)
    ('$1,234.56', '$4.20', '$0.0010')
    """
    dollars = micros / MICROS
    if dollars and abs(dollars) < 0.01:
        return f"${dollars:.4f}"
    return f"${dollars:,.2f}"


def micros_threshold(dollars: Decimal) -> float | Decimal:
    """A USD threshold in micro-dollars, as a float when that is exact (compares like the Decimal, faster).

    >>> micros_threshold(Decimal("2")), micros_threshold(Decimal("0.0000001"))
    (2000000.0, Decimal('0.1000000'))
    """
    value = dollars * MICROS
    exact = value.is_finite() and value == value.to_integral_value() and abs(value) < 2**53
    return float(value) if exact else value


@dataclass(slots=True)
class Observation:
    """One gateway request or outcome, flattened once for every detector (no pydantic on the hot path).

    ``ts`` is the event time in epoch seconds (float) and ``cost`` the cost in integer
    micro-dollars (0 when unknown; ``cost_known`` says which).
    """

    kind: str  # "request" or "outcome"
    ts: float
    cost: int = 0
    cost_known: bool = True
    model: str = ""
    provider: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    ok: bool = True
    error_type: str | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    outcome_kind: str | None = None
    outcome_value: float = 0.0
    key_hash: str | None = None
    key_alias: str | None = None
    user: str | None = None
    team: str | None = None
    org: str | None = None
    record_id: str | None = None  # event_id / outcome_id: names the record in logs and dead letters

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)


@dataclass(slots=True)
class Finding:
    """A detector's verdict on one episode subject at one instant.

    ``episode`` distinguishes concurrent episodes of one detector on one subject (a
    session id for session_burn, ``"quarter:2026Q4:early"`` for budget_pace); ``""``
    when a detector has a single condition. ``abnormal=False`` findings may be returned
    to give a resolve its final figures; an active episode missing from a detector's
    findings counts as normal.
    """

    abnormal: bool
    observed: float
    expected: float | None = None
    unit: str = "usd"
    episode: str = ""
    summary: str = ""
    severity: str | None = None  # None: the detector's configured severity
    labels: dict[str, str] = field(default_factory=dict)
    root_cause_kinds: tuple[str, ...] = ("model", "session", "tag")
    window: str = "short"  # which contributor window explains it: "short" (1-2 h) or "day" (24 h)
    #: explicit root cause as (kind, name, micro-dollars, requests), shares relative to the largest;
    #: None: taken from the contributor window
    causes: list[tuple[str, str, int, int]] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Context:
    """What the engine shares with every detector of one subject (read-only for detectors)."""

    scope: str
    subject: str
    baseline: SpendBaseline
    contributors: Contributors
    labels: dict[str, str]
    #: False while the subject has no active episode: normal findings (which only give a resolve its
    #: figures) are then of no use, and a detector may leave them out rather than build one per record
    normal_findings: bool = True


class Detector:
    """Base class of every detector: one subject's state plus the (shared, unpickled) config.

    Subclasses set ``name`` (= their config section, whose ``implementation`` names them)
    and implement ``learn_one`` and ``score_one``; state lives in ordinary attributes (small: ints, floats, short lists,
    river stats). ``config`` is dropped from snapshots and re-bound by the engine.
    """

    name: ClassVar[str] = ""
    #: Which record kinds this detector wants ("request", "outcome").
    kinds: ClassVar[frozenset[str]] = frozenset({"request"})
    #: Whether its condition can turn abnormal with no new records, by time passing alone (a budget
    #: forecast, a missing heartbeat). Only such detectors are scored on the idle ticks of a subject
    #: with no active episode; the others are scored on records, and on every tick while an episode is open.
    idle_tick: ClassVar[bool] = False

    def __init__(self, config: DetectorSettings, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        self.config = config
        self.baseline_config = baseline_config
        self.derive()

    @classmethod
    def applies_to(cls, config: DetectorSettings, scope: str, subject: str) -> bool:
        """Whether this detector runs for that subject at all (default: its scope is configured)."""
        return scope in config.scopes

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        """Update the state with one record of this subject (event-time order)."""

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> Iterable[Finding]:
        """The current verdicts at event time ``now`` (``obs`` is the record just learned, None on a tick)."""
        return ()

    #: Attributes holding a part with a tuple ``__getstate__`` (a window, a scorer): snapshotted as that
    #: tuple and rebuilt on load, cheaper to pickle than the object.
    parts: ClassVar[dict[str, type]] = {}

    # -- snapshots: the config is shared, never stored per subject ---------------------
    def __getstate__(self) -> dict[str, Any]:
        # config and anything derived from it (attributes named ``_cfg_*``) are re-bound on load
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("config", "baseline_config") and not k.startswith("_cfg_")}
        for name in self.parts:
            state[name] = state[name].__getstate__()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name, cls in self.parts.items():
            value = state[name]
            if not isinstance(value, cls):  # else: the object itself, from a snapshot before version 2
                setattr(self, name, restore(cls, value))

    def bind(self, config: DetectorSettings, baseline_config: BaselineConfig) -> None:
        """Attach the (shared) config after a restore; recomputes config-derived constants."""
        self.config = config
        self.baseline_config = baseline_config
        self.derive()

    def derive(self) -> None:
        """Precompute constants from the config into ``_cfg_*`` attributes (not snapshotted)."""
