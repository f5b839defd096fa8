"""Injected incidents and labelled negative scenarios, each with its ground truth.

An *incident* is something spendwatch must page for; a *negative scenario* is ordinary
life that must not page. Each is a :class:`Scenario` bound to one dedicated key (or, for
a budget, one team) that changes how that key behaves through a few hooks the generator
calls, and a :class:`GroundTruth` record saying what should (or should not) be paged, on
which subject, from when to when, and how fast.

Times are placed in the *incident week*: the last seven days of the run (the whole run
when it is shorter), so longer runs give the detectors more history. With the default
start (a Monday) the runaway loop burns through the weekend.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from spendwatch.traffic.population import KeyProfile

HOUR = 3600.0
DAY = 86400.0

#: Incident kinds, the detector that must page each, and the time-to-detect bound (minutes).
INCIDENTS: dict[str, tuple[str, float]] = {
    # one session: paged by session_burn (burn_rate leaves a burn that one session explains to it)
    "runaway_loop": ("session_burn", 30),
    "session_burn": ("session_burn", 30),
    "spend_spike": ("spend_spike", 18 * 60),
    "model_mix_drift": ("model_mix_drift", 120),
    "cache_hit_drop": ("cache_hit_drop", 120),
    "budget_overrun": ("budget_pace", 4 * 24 * 60),  # the week's pace: a one-day ramp takes days to fill it
    "efficiency_decay": ("efficiency", 48 * 60),
    "error_storm": ("error_storm", 15),
}
#: Negative scenarios: ordinary life that must not page.
NEGATIVES: tuple[str, ...] = ("seasonality", "growth_ramp", "new_key", "sparse_key", "large_session")


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What one scenario should produce. ``negative`` scenarios must produce no page at all."""

    kind: str
    negative: bool
    scope: str  # key | team
    subject: str  # key hash or team name
    start: datetime
    end: datetime
    detector: str | None  # the detector that must page (None for negatives)
    ttd_bound_minutes: float | None
    key_alias: str | None = None
    team: str | None = None
    session_id: str | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"] = self.start.isoformat().replace("+00:00", "Z")
        out["end"] = self.end.isoformat().replace("+00:00", "Z")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroundTruth:
        return cls(**{**data, "start": datetime.fromisoformat(data["start"]),
                      "end": datetime.fromisoformat(data["end"])})


@dataclass(slots=True)
class SessionPlan:
    """A session the scenario adds on top of the key's ordinary ones."""

    start: float
    end: float
    session_id: str
    model: str
    gap: tuple[float, float]  # seconds between calls (uniform)
    context: tuple[int, int]
    output: tuple[int, int]
    cache_ratio: float
    failure_rate: float = 0.0
    error_types: tuple[str, ...] = ("rate_limit_error",)


@dataclass(slots=True)
class Scenario:
    """One incident or negative scenario; the hooks default to 'no change'."""

    kind: str
    key: KeyProfile | None
    start: float
    end: float
    team: str | None = None
    negative: bool = False
    description: str = ""
    plans: list[SessionPlan] = field(default_factory=list)
    session_id: str | None = None

    # -- hooks the generator calls --------------------------------------------------------
    def rate_factor(self, ts: float) -> float:
        return 1.0

    def model_weights(self, ts: float) -> tuple[tuple[str, float], ...] | None:
        return None

    def cache_ratio(self, ts: float) -> float | None:
        return None

    def size_factor(self, ts: float) -> float:
        return 1.0

    def truth(self) -> GroundTruth:
        detector, bound = INCIDENTS.get(self.kind, (None, None))
        key = self.key
        scope, subject = ("team", self.team) if self.team and key is None else ("key", key.key_hash)  # type: ignore[union-attr]
        return GroundTruth(
            kind=self.kind, negative=self.negative, scope=scope, subject=subject,  # type: ignore[arg-type]
            start=datetime.fromtimestamp(self.start, UTC), end=datetime.fromtimestamp(self.end, UTC),
            detector=None if self.negative else detector, ttd_bound_minutes=None if self.negative else bound,
            key_alias=key.alias if key else None, team=self.team or (key.team if key else None),
            session_id=self.session_id, description=self.description,
        )


class RateWindow(Scenario):
    """``factor`` x the key's session rate between start and end (a spend spike)."""

    factor: float = 6.0

    def rate_factor(self, ts: float) -> float:
        return self.factor if self.start <= ts < self.end else 1.0


class Ramp(Scenario):
    """A linear ramp of the rate (or of session size) from 1x at start to ``top`` x after ``hours``."""

    top: float = 2.0
    hours: float = 168.0
    on_size: bool = False

    def _level(self, ts: float) -> float:
        if ts < self.start:
            return 1.0
        return 1.0 + (self.top - 1.0) * min(1.0, (ts - self.start) / (self.hours * HOUR))

    def rate_factor(self, ts: float) -> float:
        return 1.0 if self.on_size else self._level(ts)

    def size_factor(self, ts: float) -> float:
        return self._level(ts) if self.on_size else 1.0


class ModelSwitch(Scenario):
    """From start on, ``share`` of the key's sessions go to ``model``."""

    model: str = ""
    share: float = 0.85

    def model_weights(self, ts: float) -> tuple[tuple[str, float], ...] | None:
        if ts < self.start or self.key is None:
            return None
        rest = [(m, w * (1 - self.share)) for m, w in self.key.models if m != self.model]
        return ((self.model, self.share), *rest)


class CacheBreak(Scenario):
    """From start on, the prompt cache (almost) never hits: a prompt prefix that changes every call."""

    def cache_ratio(self, ts: float) -> float | None:
        return 0.01 if ts >= self.start else None


def _mk(cls: type[Scenario], kind: str, key: KeyProfile | None, start: float, end: float, **kw: Any) -> Scenario:
    sc = cls(kind=kind, key=key, start=start, end=end)
    for name, value in kw.items():
        setattr(sc, name, value)
    return sc


def build_scenarios(
    kinds: set[str], keys: dict[str, KeyProfile], budget_team: str, week_start: float, run_end: float,
    expensive_model: str, seed: int, run_start: float,
) -> list[Scenario]:
    """Every enabled incident plus every negative scenario, on its dedicated key (see :mod:`.generator`)."""
    rng = random.Random(seed * 7919 + 17)
    w = week_start
    out: list[Scenario] = []

    def when(day: float, hour: float, key: KeyProfile | None = None) -> float:
        """``hour`` o'clock on ``day`` of the incident week, in the key's team's time zone."""
        return w + day * DAY + (hour - (key.tz_offset_hours if key else 0)) * HOUR

    if "runaway_loop" in kinds:
        key = keys["runaway_loop"]
        start, end = when(5, 2, key) + rng.uniform(0, 1800), min(run_end, when(6, 12, key))
        sid = f"s{key.index:03d}-runaway"
        sc = _mk(Scenario, "runaway_loop", key, start, end, session_id=sid,
                 description="an agent retries the same step in a loop on the most expensive model all weekend")
        sc.plans.append(SessionPlan(start, end, sid, expensive_model, (10, 18), (90_000, 120_000), (1_000, 1_800), 0.5))
        out.append(sc)
    if "session_burn" in kinds:
        key = keys["session_burn"]
        start = when(3, 14, key) + rng.uniform(0, 1800)
        sid = f"s{key.index:03d}-burn"
        sc = _mk(Scenario, "session_burn", key, start, start + 45 * 60, session_id=sid,
                 description="one session burns well over $100 within the hour")
        sc.plans.append(SessionPlan(start, start + 45 * 60, sid, expensive_model, (9, 14), (35_000, 45_000),
                                    (600, 1_000), 0.05))
        out.append(sc)
    if "spend_spike" in kinds:
        key = keys["spend_spike"]
        start = when(3, 7, key)
        out.append(_mk(RateWindow, "spend_spike", key, start, min(run_end, start + 20 * HOUR), factor=8.0,
                       description="the key's traffic jumps to 8x for most of a day (24h spend > 3x the daily mean)"))
    if "model_mix_drift" in kinds:
        key = keys["model_mix_drift"]
        out.append(_mk(ModelSwitch, "model_mix_drift", key, when(3, 10, key), run_end, model=expensive_model, share=0.85,
                       description=f"85% of the developer's sessions move to {expensive_model}"))
    if "cache_hit_drop" in kinds:
        key = keys["cache_hit_drop"]
        out.append(_mk(CacheBreak, "cache_hit_drop", key, when(4, 9, key), run_end,
                       description="the prompt cache stops hitting (cache-read ratio ~70% -> ~1%)"))
    if "budget_overrun" in kinds:
        out.append(_mk(Ramp, "budget_overrun", None, when(1, 0), run_end, team=budget_team, top=3.0, hours=24.0,
                       description=f"team {budget_team}'s spend ramps to 3x over a day: the quarter's "
                       "forecast overruns its budget"))
    if "efficiency_decay" in kinds:
        key = keys["efficiency_decay"]
        out.append(_mk(Ramp, "efficiency_decay", key, when(2, 0, key), run_end, top=1.8, hours=12.0, on_size=True,
                       description="sessions get longer and bigger (spend per session ~3.2x) while accepted "
                       "tasks stay flat"))
    if "error_storm" in kinds:
        key = keys["error_storm"]
        start = when(3, 16, key) + rng.uniform(0, 1800)
        sid = f"s{key.index:03d}-retry"
        sc = _mk(Scenario, "error_storm", key, start, start + 90 * 60, session_id=sid,
                 description="a retry doom loop: ~95% of calls fail (429/5xx) and are retried at once for 90 min")
        sc.plans.append(SessionPlan(start, start + 90 * 60, sid, key.models[0][0], (0.8, 2.5), (20_000, 30_000),
                                    (300, 600), 0.6, failure_rate=0.95,
                                    error_types=("rate_limit_error", "rate_limit_error", "api_error", "timeout")))
        out.append(sc)

    first = run_start
    out.append(_mk(Scenario, "seasonality", keys["seasonality"], first, run_end, negative=True,
                   description="strong weekday/weekend and day/night swings (weekend ~5% of a weekday)"))
    out.append(_mk(Ramp, "growth_ramp", keys["growth_ramp"], first, run_end, negative=True, top=2.0,
                   hours=max(24.0, (run_end - first) / HOUR),
                   description="a key ramping steadily to 2x over the run"))
    new_key = keys["new_key"]
    out.append(_mk(Scenario, "new_key", new_key, new_key.active_from, run_end, negative=True,
                   description="a key created mid-week starting ordinary agent work"))
    out.append(_mk(Scenario, "sparse_key", keys["sparse_key"], first, run_end, negative=True,
                   description="a key with a handful of calls a day and whole days with none"))
    key = keys["large_session"]
    start = when(3, 10, key) if when(3, 10, key) < run_end else max(first, run_end - 6 * HOUR)
    sid = f"s{key.index:03d}-big"
    sc = _mk(Scenario, "large_session", key, start, start + 150 * 60, negative=True, session_id=sid,
             description="one long (2.5 h, ~$35) but ordinary refactoring session")
    sc.plans.append(SessionPlan(start, start + 150 * 60, sid, key.models[0][0], (25, 35), (70_000, 90_000),
                                (1_200, 1_800), 0.7))
    out.append(sc)
    return out


def poisson(rng: random.Random, rate: float) -> int:
    """A Poisson draw (Knuth for small rates, normal approximation above 30)."""
    if rate <= 0:
        return 0
    if rate > 30:
        return max(0, round(rng.gauss(rate, math.sqrt(rate))))
    limit, k, p = math.exp(-rate), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
