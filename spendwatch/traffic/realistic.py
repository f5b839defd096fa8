"""Realistic gateway traffic with many labelled incidents on ordinary keys: the honest evaluation's data.

Independent of the scenario generator (:mod:`spendwatch.traffic.generator`, one dedicated key
per incident, sized to be caught): here an organisation of teams and users sends LiteLLM
``StandardLoggingPayload`` logs as a real proxy would, and every incident family is injected
several times on *ordinary* keys drawn at random -- sparse keys included -- with magnitude,
duration, start hour and model tier drawn over wide ranges. Nothing is sized to be easy.

What ordinary life looks like (none of it is labelled; a page on it is a false page):

* key volumes heavy-tailed (log-normal, ~20 to ~3,000 requests a weekday), keys grouped in
  teams of users; three habits: coding agents (long sessions, growing context, prompt
  caching), chat (short sessions), services (flat day, often a nightly batch job);
* a session keeps ONE model for its whole length; each key has a tier mix (economy /
  standard / frontier, by :func:`~spendwatch.schemas.pricing.price_tier`), frontier share
  mostly 0-10%; session lengths log-normal (so occasional long, normal sessions);
* per-key daily shape in the owner's time zone with hour and day noise, quiet weekends,
  gradual growth (or decline), keys created mid-run, one key replaced by a new key for the
  same user, cache-read ratios of 40-80%, ~1-2% failures (retried).

Incidents (after ``warmup_days``), each labelled ``family, key | team | session, start, end``:
``runaway_loop``, ``session_burn``, ``spend_spike``, ``model_mix_drift`` (key or team),
``context_bloat``, ``cache_hit_drop``, ``error_storm``, ``budget_overrun`` (team).

>>> org = RealisticTraffic(days=2, seed=4, keys=12, teams=3, warmup_days=1)
>>> lines = list(org.litellm_lines())
>>> len(lines) > 200, all(b"standard_logging_object" not in line for line in lines[:3])
(True, True)
>>> from spendwatch.schemas.adapters import parse_message
>>> event = parse_message(lines[0])[0]
>>> event.gateway, event.api_key_hash in {key.key_hash for key in org.keys}
('litellm', True)
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson

from spendwatch.detectors.budget_pace import quarter_bounds
from spendwatch.schemas.pricing import price_tier
from spendwatch.traffic.generator import DEFAULT_START, cost_string
from spendwatch.traffic.incidents import poisson
from spendwatch.traffic.population import HOURLY, HOURLY_SERVICE, PICO, TEAM_NAMES, ModelPrice, price_table

HOUR = 3600.0
DAY = 86_400.0

#: An error storm is labelled only if the key's calls really failed in it at least this often (a storm
#: drawn on a key that sends two requests in those hours is not one anybody could see, or should be paged for).
MIN_STORM_FAILURES = 5

FAMILIES = ("runaway_loop", "session_burn", "spend_spike", "model_mix_drift", "context_bloat", "cache_hit_drop",
            "error_storm", "budget_overrun")

_FIRST = ("ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jo", "kofi", "lena", "mei", "nico",
          "omar", "pia", "quinn", "ravi", "sara", "tomas", "uma", "vik", "wen", "yusuf", "zoe")
_ERRORS = ("RateLimitError", "APIError", "Timeout", "InternalServerError")
_STORM_ERRORS = ("RateLimitError", "ServiceUnavailableError", "APIConnectionError")
_TZ = (-8, -5, 0, 1, 8)


@dataclass(frozen=True, slots=True)
class Label:
    """One injected incident: its family, its subject (exactly one of key/team/session) and window."""

    family: str
    start: datetime
    end: datetime
    key: str = ""
    team: str = ""
    session: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"family": self.family, "key": self.key, "team": self.team, "session": self.session,
                "start": _iso(self.start.timestamp()), "end": _iso(self.end.timestamp()), "detail": self.detail}


@dataclass(slots=True)
class Effect:
    """A change to one key's ordinary behaviour over [start, end)."""

    kind: str  # rate | frontier | context | cache | failure
    start: float
    end: float
    value: float
    ramp_hours: float = 0.0

    def level(self, ts: float) -> float:
        """The effect's value at ``ts``, ramping linearly from neutral over ``ramp_hours``."""
        if self.ramp_hours <= 0:
            return self.value
        neutral = 1.0
        done = min(1.0, (ts - self.start) / (self.ramp_hours * HOUR))
        return neutral + (self.value - neutral) * done


@dataclass(slots=True)
class RealKey:
    index: int
    key_hash: str
    alias: str
    user: str
    team: str
    org: str
    kind: str  # agent | chat | service
    tz: int
    daily_requests: float  # weekday requests a day at the start (batch job excluded)
    session_median: float
    gap_seconds: float
    context_tokens: int
    context_step: int
    output_tokens: int
    cache_ratio: float
    failure_rate: float
    weekend_factor: float
    growth_per_day: float
    models: tuple[tuple[str, float], ...]
    frontier_share: float
    shape: tuple[float, ...]
    active_from: float = 0.0
    active_until: float = math.inf
    batch: tuple[int, int, str, bool] | None = None  # (local hour, calls, model, weekdays only)
    effects: list[Effect] = field(default_factory=list)
    frontier_model: str | None = None  # a team drift's shared model
    sessions_per_day: float = 0.0


@dataclass(slots=True)
class _Planned:
    """A scheduled incident session (runaway loop, session burn)."""

    key: RealKey
    session: str
    model: str
    start: float
    end: float
    calls: int  # 0: until end at ``gap`` spacing
    gap: float
    context: int
    context_step: int
    output: int
    cache_ratio: float


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(round(ts, 3), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _hash(seed: int, index: int) -> str:
    return hashlib.sha256(f"spendwatch-realistic:{seed}:{index}".encode()).hexdigest()


def _lognormal_clipped(rng: random.Random, median: float, sigma: float, low: float, high: float) -> float:
    return min(high, max(low, rng.lognormvariate(math.log(median), sigma)))


class RealisticTraffic:
    """A seeded organisation and its ``days`` of LiteLLM logs with labelled incidents.

    Parameters
    ----------
    days, seed, start
        Length, seed (everything is deterministic in it), first day (UTC midnight).
    keys, teams
        Size of the organisation.
    warmup_days
        No incident starts before this many days.
    incidents_per_family
        ``(low, high)``: instances per family per seed (budget overruns are capped by the teams).
    """

    def __init__(self, days: float = 14, seed: int = 1, start: date | datetime | str | None = None, keys: int = 60,
                 teams: int = 10, warmup_days: float = 7, incidents_per_family: tuple[int, int] = (4, 8)) -> None:
        if days <= warmup_days:
            raise ValueError("days must be longer than the warm-up")
        if teams < 2 or keys < 2 * teams:
            raise ValueError("need at least 2 teams and 2 keys per team")
        start = start or DEFAULT_START
        if isinstance(start, str):
            start = datetime.fromisoformat(start)
        if not isinstance(start, datetime):
            start = datetime(start.year, start.month, start.day)
        self.start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        self.days, self.seed, self.warmup_days = days, seed, warmup_days
        self.start_ts = self.start.timestamp()
        self.end_ts = self.start_ts + days * DAY
        self.warmup_end = self.start_ts + warmup_days * DAY
        self.prices = price_table(self.start.date().isoformat())
        self.tiers: dict[str, list[str]] = defaultdict(list)
        for model, price in self.prices.items():
            self.tiers[price_tier(model, price.provider)].append(model)
        rng = random.Random(seed * 7919 + 11)
        self.teams = [(TEAM_NAMES[i % len(TEAM_NAMES)] + ("" if i < len(TEAM_NAMES) else f"-{i}"),
                       "org-acme" if i % 3 else "org-labs", _TZ[i % len(_TZ)]) for i in range(teams)]
        self.keys: list[RealKey] = self._population(rng, keys)
        self.labels: list[Label] = []
        self.planned: list[_Planned] = []
        self.budget_factors: dict[str, float] = {}
        self._inject(random.Random(seed * 104_729 + 5), incidents_per_family)

    # -- population ------------------------------------------------------------------------
    def _model_mix(self, rng: random.Random, kind: str) -> tuple[tuple[tuple[str, float], ...], float]:
        economy, standard, frontier = self.tiers["economy"], self.tiers["standard"], self.tiers["frontier"]
        draw = rng.random()
        if kind == "service":
            share = 0.0 if draw < 0.7 else rng.uniform(0.01, 0.08)
        elif draw < 0.45:
            share = 0.0
        elif draw < 0.8:
            share = rng.uniform(0.01, 0.10)
        else:
            share = rng.uniform(0.2, 0.9)  # frontier-heavy power users
        econ_weight = rng.uniform(0.1, 0.9) if kind != "service" else rng.uniform(0.6, 1.0)
        mix: dict[str, float] = defaultdict(float)
        rest = 1.0 - share
        for model in rng.sample(economy, k=rng.randint(1, 2)):
            mix[model] += rest * econ_weight / 2
        for model in rng.sample(standard, k=rng.randint(1, 2)):
            mix[model] += rest * (1 - econ_weight) / 2
        if share:
            mix[rng.choice(frontier)] += share
        total = sum(mix.values())
        return tuple((m, w / total) for m, w in sorted(mix.items())), share

    def _make_key(self, rng: random.Random, index: int, team: tuple[str, str, int], user: str, kind: str
                  ) -> RealKey:
        name, org, tz = team
        models, share = self._model_mix(rng, kind)
        shape_base = HOURLY_SERVICE if kind == "service" else HOURLY
        shape = [v * rng.lognormvariate(0, 0.2) for v in shape_base]
        mean = sum(shape) / 24
        daily = _lognormal_clipped(rng, 150, 1.1, 20, 3000)
        if kind == "agent":
            median, gap, ctx, step = rng.uniform(8, 25), rng.uniform(4, 20), rng.randint(8_000, 40_000), rng.randint(
                300, 2_000)
        elif kind == "chat":
            median, gap, ctx, step = rng.uniform(2, 5), rng.uniform(20, 120), rng.randint(1_500, 8_000), rng.randint(
                200, 900)
        else:
            median, gap, ctx, step = rng.uniform(1, 3), rng.uniform(0.5, 5), rng.randint(1_000, 6_000), rng.randint(
                0, 300)
        key = RealKey(
            index=index, key_hash=_hash(self.seed, index), alias=f"{name}-{user.split('@')[0].split('.')[0]}-{kind}"
            f"{index}", user=user, team=name, org=org, kind=kind, tz=tz, daily_requests=daily, session_median=median,
            gap_seconds=gap, context_tokens=ctx, context_step=step, output_tokens=rng.randint(150, 1_200),
            cache_ratio=rng.uniform(0.4, 0.8), failure_rate=rng.uniform(0.005, 0.02),
            weekend_factor=rng.uniform(0.6, 1.0) if kind == "service" else rng.uniform(0.05, 0.35),
            growth_per_day=rng.uniform(-0.01, 0.04), models=models, frontier_share=share,
            shape=tuple(v / mean for v in shape),
        )
        key.sessions_per_day = daily / (median * math.exp(0.5))  # log-normal lengths, sigma 1
        if kind == "service" and rng.random() < 0.6:  # a recurring nightly (or weekday) batch job
            key.batch = (rng.choice((1, 2, 3, 4, 22, 23)), int(_lognormal_clipped(rng, 150, 0.8, 30, 1500)),
                         rng.choice(self.tiers["economy"]), rng.random() < 0.4)
        return key

    def _population(self, rng: random.Random, count: int) -> list[RealKey]:
        keys: list[RealKey] = []
        for i in range(count):
            team = self.teams[rng.randrange(len(self.teams))] if i >= len(self.teams) else self.teams[i]
            user = f"{_FIRST[rng.randrange(len(_FIRST))]}.{team[0].split('-')[0]}{rng.randint(1, 9)}@example.com"
            kind = rng.choices(("agent", "chat", "service"), (0.45, 0.3, 0.25))[0]
            keys.append(self._make_key(random.Random(self.seed * 1_000_003 + i), i, team, user, kind))
        # keys created mid-run (some after the warm-up: a new key must not page)
        pool = keys[len(self.teams):] or keys[1:]
        for key in rng.sample(pool, k=min(len(pool), max(1, count // 15))):
            key.active_from = self.start_ts + rng.uniform(1, self.days - 2) * DAY
        # one user replaces their key: the old one stops, a new one (same habits) takes over
        old = rng.choice([k for k in keys if k.active_from == 0.0])
        switch = self.start_ts + rng.uniform(self.warmup_days - 2, self.days - 2) * DAY
        new = self._make_key(random.Random(self.seed * 1_000_003 + count), count,
                             next(t for t in self.teams if t[0] == old.team), old.user, old.kind)
        for name in ("daily_requests", "session_median", "gap_seconds", "context_tokens", "context_step",
                     "output_tokens", "cache_ratio", "failure_rate", "weekend_factor", "growth_per_day", "models",
                     "frontier_share", "shape", "batch", "sessions_per_day"):
            setattr(new, name, getattr(old, name))
        new.alias = old.alias.rsplit("-", 1)[0] + f"-{old.kind}{old.index}-v2"
        old.active_until, new.active_from = switch, switch
        keys.append(new)
        return keys

    # -- incidents --------------------------------------------------------------------------
    def _active(self, key: RealKey, start: float, end: float) -> bool:
        return key.active_from <= start and key.active_until >= end

    def _free(self, busy: dict[int, list[tuple[float, float]]], key: RealKey, start: float, end: float) -> bool:
        pad = 6 * HOUR
        return all(end + pad <= s or start >= e + pad for s, e in busy[key.index])

    def _inject(self, rng: random.Random, per_family: tuple[int, int]) -> None:
        busy: dict[int, list[tuple[float, float]]] = defaultdict(list)
        first, last = self.warmup_end, self.end_ts - 2 * HOUR
        injectors: dict[str, Callable[[random.Random, float, float], tuple[list[RealKey], float, float] | None]] = {
            "runaway_loop": self._runaway_loop, "session_burn": self._session_burn, "spend_spike": self._spend_spike,
            "model_mix_drift": self._mix_drift, "context_bloat": self._context_bloat,
            "cache_hit_drop": self._cache_drop, "error_storm": self._error_storm,
        }
        self._busy = busy
        self._spikes: list[tuple[RealKey, Effect, float]] = []
        self._drawn: dict[int, float] = {}
        #: incidents injected but not true of the simulated traffic (a spike under 3x, a ramp under budget): unlabelled
        self.dropped: list[Label] = []
        self._ramps: dict[str, list[Effect]] = defaultdict(list)
        for family, inject in injectors.items():
            wanted = rng.randint(*per_family)
            if family == "error_storm":
                wanted *= 2  # about half land where the key happens to send nothing and are dropped (_finalize_labels)
            made = attempts = 0
            while made < wanted and attempts < 200:
                attempts += 1
                if inject(rng, first, last):
                    made += 1
        self._budget_overruns(rng, per_family)
        self._ordinary_daily = self._ordinary_team_pace()
        self._settle()
        self._finalize_labels()
        self.labels.sort(key=lambda label: (label.start, label.family))

    def _ordinary_team_pace(self) -> dict[str, int]:
        """Each team's mean daily spend (pico-dollars) over the whole run without the incidents."""
        saved = [(key, key.effects) for key in self.keys]
        planned, self.planned = self.planned, []
        for key in self.keys:
            key.effects = []
        week: dict[str, int] = defaultdict(int)
        try:
            for _, key, *rest in self.calls():
                week[key.team] += rest[-2]
        finally:
            for key, effects in saved:
                key.effects = effects
            self.planned = planned
        return {team: int(week.get(team, 0) / self.days) for team, _, _ in self.teams}

    def _spend(self) -> tuple[dict[str, list[int]], dict[tuple[str, int], int], dict[str, int], dict[str, list[float]],
                              dict[str, list[float]]]:
        """Simulated spend (pico-dollars): per team per hour, per key alias per day, per session; and the
        times of each key alias's failed calls and of its successful calls in ordinary sessions (the calls a
        context or cache effect changes: not batch jobs, loops or burns)."""
        hours = math.ceil((self.end_ts - self.start_ts) / HOUR)
        team_hours: dict[str, list[int]] = {team: [0] * hours for team, _, _ in self.teams}
        key_days: dict[tuple[str, int], int] = defaultdict(int)
        sessions: dict[str, int] = defaultdict(int)
        failures: dict[str, list[float]] = defaultdict(list)
        ordinary: dict[str, list[float]] = defaultdict(list)
        for ts, key, session, _model, ok, *rest in self.calls():
            cost = rest[-2]
            if not ok:
                failures[key.alias].append(ts)
            elif session.startswith("t"):  # _session's ids: t<seed>-<key>-<n>
                ordinary[key.alias].append(ts)
            team_hours[key.team][int((ts - self.start_ts) // HOUR)] += cost
            key_days[(key.alias, int((ts - self.start_ts) // DAY))] += cost
            sessions[session] += cost
        return team_hours, key_days, sessions, failures, ordinary

    def team_forecasts(self, team_hours: dict[str, list[int]] | None = None) -> dict[str, list[float]]:
        """Per team, per hour of the run: spend to date + (last 7 days' mean daily spend) x days left (USD)."""
        spend = team_hours if team_hours is not None else self._spend()[0]
        quarter_end = quarter_bounds(self.start_ts)[2]
        out = {}
        for team, series in spend.items():
            total, forecasts = 0, []
            for h, amount in enumerate(series):
                total += amount
                week = sum(series[max(0, h - 167):h + 1])
                days = min(7.0, (h + 1) / 24)
                days_left = (quarter_end - (self.start_ts + (h + 1) * HOUR)) / DAY
                forecasts.append((total + week / days * days_left) / PICO)
            out[team] = forecasts
        return out

    def _finalize_labels(self) -> None:
        """Labels true of the simulated traffic, with what each was worth.

        A team whose pace passes its budget after the warm-up anyway (incidents on its keys, or
        heavy-tailed ordinary spend against a tight budget) is a real budget overrun: labelled too.
        An injected spike whose day stays under 3x its 7-day average, or a ramp that never passes
        the budget (short runs), or an error storm on a key that sent fewer than
        :data:`MIN_STORM_FAILURES` failing calls in it (a key quiet during its "storm"), or a cache drop or
        context bloat on a key that sent no ordinary call while it lasted, is not what its label says: moved
        to :attr:`dropped`. Every label's
        detail gets the simulated dollars (session cost, the key's usual day, the spike day).
        """
        team_hours, key_days, sessions, failures, ordinary = self._spend()
        budgets = self._budget_amounts()
        labelled = {label.team for label in self.labels if label.family == "budget_overrun"}
        first_hour = math.ceil((self.warmup_end - self.start_ts) / HOUR)
        for team, team_forecast in self.team_forecasts(team_hours).items():
            if team in labelled:
                continue
            over = next((h for h in range(first_hour, len(team_forecast)) if team_forecast[h] > float(budgets[team])),
                        None)
            if over is not None:
                start = self.start_ts + (over + 1) * HOUR
                self._label("budget_overrun", start, self.end_ts, "ordinary variation or incidents on its keys push "
                            f"the pace past a budget {self.budget_factors[team]:.2f}x its ordinary pace", team=team)
        warm_days = max(1, int(self.warmup_days))
        forecasts = self.team_forecasts(team_hours)
        kept = []
        for label in self.labels:
            extra = ""
            if label.family == "budget_overrun":
                after = int((label.start.timestamp() - self.start_ts) // HOUR)
                if max(forecasts[label.team][after:], default=0.0) <= float(budgets[label.team]):
                    self.dropped.append(label)
                    continue
            if label.session:
                extra = f"; session ${sessions.get(label.session, 0) / PICO:,.2f}"
            elif label.key:
                usual = sum(key_days.get((label.key, d), 0) for d in range(warm_days)) / warm_days / PICO
                extra = f"; key ~${usual:,.2f}/day in the warm-up"
                if label.family == "error_storm":
                    start, end = label.start.timestamp(), label.end.timestamp()
                    failed = sum(start <= ts <= end for ts in failures.get(label.key, ()))
                    if failed < MIN_STORM_FAILURES:
                        self.dropped.append(label)
                        continue
                    extra += f"; {failed} failed calls in it"
                if label.family in ("cache_hit_drop", "context_bloat"):
                    start, end = label.start.timestamp(), label.end.timestamp()
                    if not any(start <= ts < end for ts in ordinary.get(label.key, ())):
                        self.dropped.append(label)  # the key sent no call the effect changed: nothing happened
                        continue
                if label.family == "spend_spike":
                    first = int((label.start.timestamp() - self.start_ts) // DAY)
                    last = int((label.end.timestamp() - self.start_ts) // DAY)
                    day = max(range(first, last + 1), key=lambda d: key_days.get((label.key, d), 0))
                    avg = sum(key_days.get((label.key, day - i), 0) for i in range(1, 8)) / 7 / PICO
                    spent = key_days.get((label.key, day), 0) / PICO
                    ratio = spent / avg if avg else (math.inf if spent else 0.0)
                    if ratio <= 3:
                        self.dropped.append(label)
                        continue
                    extra += f"; spike day ${spent:,.2f} = {ratio:.1f}x 7-day avg ${avg:,.2f}"
            kept.append(replace(label, detail=label.detail + extra) if extra else label)
        self.labels = kept

    def _settle(self, rounds: int = 3) -> None:
        """Make every spend_spike and budget_overrun true of the simulated traffic, not only of its expectation.

        Spend per key-day is noisy (a sparse key's day can hinge on one long session), so a spike
        sized from expected rates can land under 3x the key's actual 7-day average, and a ramp
        under its team's budget. Each round simulates the traffic and scales up only the
        multipliers that fell short (to their own drawn target), so the magnitudes drawn stay the
        labels' magnitudes.
        """
        for _ in range(rounds):
            key_day: dict[tuple[int, int], int] = defaultdict(int)
            team_total: dict[str, int] = defaultdict(int)
            team_week: dict[str, int] = defaultdict(int)
            for ts, key, *rest in self.calls():
                cost = rest[-2]
                key_day[(key.index, int(ts // DAY))] += cost
                team_total[key.team] += cost
                if ts >= self.end_ts - 7 * DAY:
                    team_week[key.team] += cost
            short = False
            for key, effect, factor in self._spikes:
                best = 0.0
                for day in range(int(effect.start // DAY), int(effect.end // DAY) + 1):
                    average = sum(key_day[(key.index, day - i)] for i in range(1, 8)) / 7
                    best = max(best, key_day[(key.index, day)] / average if average else math.inf)
                if best < 3.2:
                    short = True
                    effect.value = min(2000.0, effect.value * min(4.0, factor / max(best, 0.5)))
            budgets = self._budget_amounts()
            days_left = (quarter_bounds(self.start_ts)[2] - self.end_ts) / DAY
            week_days = min(7.0, self.days)
            for team, effects in self._ramps.items():
                forecast = (team_total[team] + team_week[team] / week_days * days_left) / PICO
                if forecast < float(budgets[team]) * 1.1:
                    for effect in effects:
                        drawn = self._drawn.setdefault(id(effect), effect.value)
                        grown = min(3 * drawn, effect.value * float(budgets[team]) * 1.25 / max(forecast, 1e-9))
                        short = short or grown > effect.value
                        effect.value = grown
            if not short:
                return

    def _pick_key(self, rng: random.Random, start: float, end: float, ok: Callable[[RealKey], bool] = lambda k: True
                  ) -> RealKey | None:
        keys = [k for k in self.keys if self._active(k, start, end) and self._free(self._busy, k, start, end) and ok(k)]
        if not keys:
            return None
        key = rng.choice(keys)
        self._busy[key.index].append((start, end))
        return key

    def _label(self, family: str, start: float, end: float, detail: str, key: RealKey | None = None, team: str = "",
               session: str = "") -> None:
        self.labels.append(Label(family, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC),
                                 key=key.alias if key is not None and not session else "", team=team,
                                 session=session, detail=detail))

    def _model_of_tier(self, rng: random.Random, tier: str, key: RealKey) -> str:
        models = self.tiers[tier]
        own = [m for m, _ in key.models if m in models]
        return rng.choice(own) if own and rng.random() < 0.6 else rng.choice(models)

    def _runaway_loop(self, rng: random.Random, first: float, last: float) -> bool:
        hours = rng.uniform(3, 30)
        start = rng.uniform(first, last - 1 * HOUR)
        end = min(start + hours * HOUR, self.end_ts - 60)
        key = self._pick_key(rng, start, end)
        if key is None:
            return False
        per_10min = math.exp(rng.uniform(math.log(2), math.log(60)))
        tier = rng.choice(("economy", "standard", "frontier"))
        model = self._model_of_tier(rng, tier, key)
        session = f"loop-{key.index}-{len(self.planned)}-{self.seed}"
        self.planned.append(_Planned(key, session, model, start, end, 0, 600 / per_10min,
                                     int(key.context_tokens * rng.uniform(0.8, 2.0)), 0, key.output_tokens,
                                     min(0.95, key.cache_ratio * rng.uniform(1.0, 1.2))))
        self._label("runaway_loop", start, end, f"{per_10min:.1f} calls/10min for {(end - start) / HOUR:.1f}h "
                    f"on {model} ({tier}); key ~{key.daily_requests:.0f} req/day", key, session=session)
        return True

    def _session_burn(self, rng: random.Random, first: float, last: float) -> bool:
        minutes = rng.uniform(20, 60)
        start = rng.uniform(first, last - minutes * 60)
        end = start + minutes * 60
        key = self._pick_key(rng, start, end)
        if key is None:
            return False
        calls = rng.randint(100, 400)
        model = self._model_of_tier(rng, "frontier", key)
        session = f"burn-{key.index}-{len(self.planned)}-{self.seed}"
        self.planned.append(_Planned(key, session, model, start, end, calls, minutes * 60 / calls,
                                     rng.randint(8_000, 40_000), rng.randint(300, 1_500), key.output_tokens,
                                     key.cache_ratio))
        self._label("session_burn", start, end, f"{calls} calls in {minutes:.0f} min on {model}; key "
                    f"~{key.daily_requests:.0f} req/day", key, session=session)
        return True

    def _day_rate(self, key: RealKey, day_start: float) -> float:
        weekday = datetime.fromtimestamp(day_start + 12 * HOUR + key.tz * HOUR, UTC).weekday()
        return key.weekend_factor if weekday >= 5 else 1.0

    def _spend_spike(self, rng: random.Random, first: float, last: float) -> bool:
        hours = rng.uniform(2, 12)
        start = rng.uniform(first, last - hours * HOUR)
        end = start + hours * HOUR
        key = self._pick_key(rng, start, end)
        if key is None:
            return False
        # the key's day (UTC) must end > factor x its 7-day average day: size the multiplier from its shape
        factor = rng.uniform(3.5, 8.0)
        week_avg = (5 + 2 * key.weekend_factor) / 7
        day_start = math.floor(start / DAY) * DAY
        day = self._day_rate(key, day_start)
        window = sum(key.shape[int((start + i * HOUR + key.tz * HOUR) % DAY // HOUR)] / 24
                     for i in range(int(math.ceil(hours)))) * day * min(1.0, hours / math.ceil(hours))
        multiplier = 1 + max(0.0, factor * week_avg - day) / max(window, 0.02)
        multiplier = min(multiplier, 400.0)
        key.effects.append(Effect("rate", start, end, multiplier))
        self._spikes.append((key, key.effects[-1], factor))
        self._label("spend_spike", start, end, f"traffic multiplied for {hours:.1f}h (target day {factor:.1f}x "
                    f"7-day avg); key ~{key.daily_requests:.0f} req/day", key)
        return True

    def _mix_drift(self, rng: random.Random, first: float, last: float) -> bool:
        hours = rng.uniform(6, 72)
        start = rng.uniform(first, last - 4 * HOUR)
        end = min(start + hours * HOUR, self.end_ts)
        share = rng.uniform(0.6, 0.9)
        if rng.random() < 0.3:  # a whole team at once: its keys that rarely use frontier models
            team = rng.choice(self.teams)[0]
            members = [k for k in self.keys if k.team == team and self._active(k, start, end)]
            movers = [k for k in members if k.frontier_share <= 0.10 and self._free(self._busy, k, start, end)]
            if len(movers) < 2 or sum(k.daily_requests for k in movers) < 0.7 * sum(k.daily_requests for k in members):
                return False
            model = rng.choice(self.tiers["frontier"])
            for key in movers:
                self._busy[key.index].append((start, end))
                key.effects.append(Effect("frontier", start, end, share))
                key.frontier_model = model
            self._label("model_mix_drift", start, end, f"team: {len(movers)} of {len(members)} keys' frontier share "
                        f"-> {share:.0%} ({model})", team=team)
            return True
        key = self._pick_key(rng, start, end, lambda k: k.frontier_share <= 0.10)
        if key is None:
            return False
        key.effects.append(Effect("frontier", start, end, share))
        self._label("model_mix_drift", start, end, f"frontier share {key.frontier_share:.0%} -> {share:.0%}; key "
                    f"~{key.daily_requests:.0f} req/day", key)
        return True

    def _context_bloat(self, rng: random.Random, first: float, last: float) -> bool:
        hours = rng.uniform(6, 48)
        start = rng.uniform(first, last - 4 * HOUR)
        end = min(start + hours * HOUR, self.end_ts)
        key = self._pick_key(rng, start, end)
        if key is None:
            return False
        target = rng.uniform(3, 10)
        # input multiplier so the cost per request (input + output) grows ~target x
        price = self.prices[max(key.models, key=lambda mw: mw[1])[0]]
        ctx = key.context_tokens + key.context_step * key.session_median / 2
        per_input = price.input * (1 - key.cache_ratio) + price.cache_read * key.cache_ratio
        c_in, c_out = ctx * per_input, key.output_tokens * price.output
        growth = 1 + (target - 1) * (c_in + c_out) / c_in
        ramp = rng.uniform(0, min(12.0, hours / 2))
        key.effects.append(Effect("context", start, end, growth, ramp_hours=ramp))
        self._label("context_bloat", start, end, f"input tokens x{growth:.1f} (cost/request ~x{target:.1f}) over "
                    f"{ramp:.0f}h ramp; key ~{key.daily_requests:.0f} req/day", key)
        return True

    def _cache_drop(self, rng: random.Random, first: float, last: float) -> bool:
        hours = rng.uniform(6, 48)
        start = rng.uniform(first, last - 4 * HOUR)
        end = min(start + hours * HOUR, self.end_ts)
        key = self._pick_key(rng, start, end)
        if key is None:
            return False
        ratio = rng.uniform(0.0, 0.03) if rng.random() < 0.3 else key.cache_ratio * rng.uniform(0.1, 0.5)
        key.effects.append(Effect("cache", start, end, ratio))
        self._label("cache_hit_drop", start, end, f"cache hits {key.cache_ratio:.0%} -> {ratio:.0%}; key "
                    f"~{key.daily_requests:.0f} req/day", key)
        return True

    def _error_storm(self, rng: random.Random, first: float, last: float) -> bool:
        minutes = rng.uniform(20, 360)
        start = rng.uniform(first, last - 720 * 60)
        key = self._pick_key(rng, start, start + minutes * 60)
        if key is None:
            return False
        # a storm is calls failing: on a sparse or sleeping key it lasts until about ten calls are expected
        # from the key's own daily shape (12 h at most); the label is kept only if they really failed
        end, expected = start, 0.0
        while end < start + 720 * 60 and (end < start + minutes * 60 or expected < 10):
            hour = int((end + key.tz * HOUR) % DAY // HOUR)
            expected += key.daily_requests / 24 * key.shape[hour] * self._day_rate(key, end - end % DAY) / 12
            end += 300
        rate = rng.uniform(0.3, 0.9)
        key.effects.append(Effect("failure", start, end, rate))
        self._label("error_storm", start, end, f"failures -> {rate:.0%} for {(end - start) / 60:.0f} min; key "
                    f"~{key.daily_requests:.0f} req/day", key)
        return True

    def _budget_overruns(self, rng: random.Random, per_family: tuple[int, int]) -> None:
        """Some teams get a tight (but normally sufficient) budget, and their traffic ramps past it."""
        count = min(rng.randint(*per_family), max(1, len(self.teams) // 3))
        teams = rng.sample([t[0] for t in self.teams], k=count)
        for name, _, _ in self.teams:
            self.budget_factors[name] = rng.uniform(2.5, 3.5)
        for team in teams:
            tight = rng.uniform(1.5, 2.0)
            self.budget_factors[team] = tight
            start = rng.uniform(self.warmup_end, self.end_ts - 3 * DAY)
            multiplier = tight * rng.uniform(1.6, 3.0)
            ramp = rng.uniform(12, 48)
            for key in self.keys:
                if key.team == team:
                    key.effects.append(Effect("rate", start, self.end_ts, multiplier, ramp_hours=ramp))
                    self._ramps[team].append(key.effects[-1])
            self._label("budget_overrun", start, self.end_ts, f"team traffic ramps to x{multiplier:.1f} over "
                        f"{ramp:.0f}h against a budget {tight:.2f}x its ordinary pace", team=team)

    # -- simulation ----------------------------------------------------------------------------
    def _effect(self, key: RealKey, kind: str, ts: float) -> float | None:
        for effect in key.effects:
            if effect.kind == kind and effect.start <= ts < effect.end:
                return effect.level(ts)
        return None

    def _rate_factor(self, key: RealKey, ts: float) -> float:
        factor = 1.0
        for effect in key.effects:
            if effect.kind == "rate" and effect.start <= ts < effect.end:
                factor *= effect.level(ts)
        return factor

    @staticmethod
    def _rate_segments(key: RealKey, h0: float, h1: float) -> list[tuple[float, float, float]]:
        """The hour cut where a rate effect starts or ends inside it: (start, end, where its rate is taken).

        An incident labelled from 21:40 raises the traffic from 21:40, not from 21:00 or 22:00. An hour with no
        such boundary is one piece with its rate taken at the half hour.
        """
        cuts = sorted({b for e in key.effects if e.kind == "rate" for b in (e.start, e.end) if h0 < b < h1})
        if not cuts:
            return [(h0, h1, h0 + HOUR / 2)]
        edges = [h0, *cuts, h1]
        return [(a, b, (a + b) / 2) for a, b in zip(edges, edges[1:])]

    def calls(self) -> Iterator[tuple[float, RealKey, str, str, bool, str | None, int, int, int, int, int, float]]:
        """Every call in time order: (ts, key, session, model, ok, error, input, cached, written, output,
        cost_pico, latency_ms)."""
        import heapq

        heap: list[tuple[float, int, tuple[Any, ...]]] = []
        seq = 0
        hours = math.ceil((self.end_ts - self.start_ts) / HOUR)
        rngs = {k.index: random.Random(self.seed * 1_000_033 + 17 * k.index) for k in self.keys}
        day_noise = {k.index: [rngs[k.index].lognormvariate(0, 0.25) for _ in range(int(self.days) + 2)]
                     for k in self.keys}
        counters: dict[int, int] = defaultdict(int)
        planned = sorted(self.planned, key=lambda p: p.start)
        plan_rng = random.Random(self.seed * 31 + 1)

        def push(call: tuple[Any, ...]) -> None:
            nonlocal seq
            if call[0] < self.end_ts:
                heapq.heappush(heap, (call[0], seq, call))
                seq += 1

        for h in range(hours):
            h0 = self.start_ts + h * HOUR
            h1 = min(h0 + HOUR, self.end_ts)
            day = int((h0 - self.start_ts) // DAY)
            for key in self.keys:
                if key.active_from >= h1 or key.active_until <= h0:
                    continue
                rng = rngs[key.index]
                local = h0 + key.tz * HOUR
                local_hour = int(local % DAY // HOUR)
                weekend = datetime.fromtimestamp(local, UTC).weekday() >= 5
                rate = key.sessions_per_day / 24 * key.shape[local_hour] * day_noise[key.index][day]
                rate *= (key.weekend_factor if weekend else 1.0) * rng.lognormvariate(-0.045, 0.3)
                rate *= max(0.1, 1 + key.growth_per_day * (h0 - self.start_ts) / DAY)
                for s0, s1, middle in self._rate_segments(key, h0, h1):
                    for _ in range(poisson(rng, rate * self._rate_factor(key, middle) * (s1 - s0) / HOUR)):
                        t = s0 + rng.random() * (s1 - s0)
                        if key.active_from <= t < key.active_until:
                            counters[key.index] += 1
                            self._session(key, rng, t, f"t{self.seed}-{key.index}-{counters[key.index]}", push)
                if key.batch is not None and local_hour == key.batch[0] and not (weekend and key.batch[3]):
                    counters[key.index] += 1
                    self._batch(key, rng, h0 + rng.uniform(0, 600), f"job{self.seed}-{key.index}-{counters[key.index]}",
                                push)
            while planned and planned[0].start < h1:
                self._planned(planned.pop(0), plan_rng, push)
            while heap and heap[0][0] < h1:
                yield heapq.heappop(heap)[2]
        while heap:
            yield heapq.heappop(heap)[2]

    def _call(self, key: RealKey, rng: random.Random, ts: float, session: str, price: ModelPrice, ctx: int, out: int,
              ratio: float, first: bool, failure: float, push: Callable[[tuple[Any, ...]], None]) -> float:
        """Push one call (and its retry if it failed); returns the time the caller moves on."""
        for attempt in range(3):  # the OpenAI / Anthropic SDKs retry twice by default
            if rng.random() < failure:
                latency = rng.uniform(200, 20_000)
                errors = _STORM_ERRORS if failure > 0.2 else _ERRORS
                push((ts, key, session, price.model, False, rng.choice(errors), 0, 0, 0, 0, 0, latency))
                ts += latency / 1000 + rng.uniform(1, 6)
                if attempt < 2:
                    continue
                return ts
            cached = min(ctx, int(ctx * ratio * (0.3 if first else rng.uniform(0.85, 1.1))))
            write = min(ctx - cached, max(200, ctx // 20)) if price.provider == "anthropic" else 0  # the new turn
            cost = price.cost_pico(ctx, cached, write, out)
            latency = 250 + out * rng.uniform(8, 16) + ctx / 100
            push((ts, key, session, price.model, True, None, ctx, cached, write, out, cost, latency))
            return ts + latency / 1000
        return ts

    def _session(self, key: RealKey, rng: random.Random, t: float, session: str, push: Any) -> None:
        share = self._effect(key, "frontier", t)
        if share is not None and rng.random() < share:
            model = key.frontier_model or self._model_of_tier(rng, "frontier", key)
        else:
            models = key.models
            if share is not None:
                models = tuple(mw for mw in models if self.prices[mw[0]].tier != "frontier") or models
            model = rng.choices([m for m, _ in models], [w for _, w in models])[0]
        price = self.prices[model]
        calls = max(1, min(300, int(rng.lognormvariate(math.log(key.session_median), 1.0) + 0.5)))
        ctx = key.context_tokens * rng.uniform(0.6, 1.4)
        ctx_cap = min(200_000.0, 3 * ctx)  # agents compact their context well before the window is full
        out_mean = key.output_tokens
        for i in range(calls):
            bloat = self._effect(key, "context", t) or 1.0
            cache = self._effect(key, "cache", t)
            failure = self._effect(key, "failure", t)
            out = max(20, int(out_mean * rng.lognormvariate(-0.12, 0.5)))
            t = self._call(key, rng, t, session, price, int(min(ctx, ctx_cap) * bloat), out,
                           key.cache_ratio if cache is None else cache, i == 0,
                           key.failure_rate if failure is None else failure, push)
            t += key.gap_seconds * rng.expovariate(1.0)
            ctx += key.context_step * rng.uniform(0.5, 1.5)

    def _batch(self, key: RealKey, rng: random.Random, t: float, session: str, push: Any) -> None:
        _, calls, model, _ = key.batch  # type: ignore[misc]
        calls = max(1, int(calls * rng.uniform(0.8, 1.25)))
        price = self.prices[model]
        for i in range(calls):
            failure = self._effect(key, "failure", t)
            t = self._call(key, rng, t, session, price, int(key.context_tokens * rng.uniform(0.8, 1.2)),
                           int(key.output_tokens * rng.uniform(0.5, 1.5)), key.cache_ratio, i == 0,
                           key.failure_rate if failure is None else failure, push)
            t += rng.uniform(0.2, 3.0)

    def _planned(self, plan: _Planned, rng: random.Random, push: Any) -> None:
        price = self.prices[plan.model]
        t, i, ctx = plan.start, 0, float(plan.context)
        while t < plan.end and (not plan.calls or i < plan.calls):
            failure = self._effect(plan.key, "failure", t)
            size = int(min(ctx, 200_000) * (1 if plan.context_step else rng.uniform(0.98, 1.02)))
            self._call(plan.key, rng, t, plan.session, price, size, int(plan.output * rng.uniform(0.9, 1.1)),
                       plan.cache_ratio, i == 0, plan.key.failure_rate if failure is None else failure, push)
            t += plan.gap * rng.uniform(0.8, 1.2)
            ctx += plan.context_step * rng.uniform(0.5, 1.5)
            i += 1

    # -- rendering -------------------------------------------------------------------------------
    def litellm_lines(self) -> Iterator[bytes]:
        """One LiteLLM ``StandardLoggingPayload`` JSON object per call (no newline), in time order."""
        dumps = orjson.dumps
        for n, (ts, key, session, model, ok, error, ctx, cached, write, out, cost, latency) in enumerate(self.calls()):
            price = self.prices[model]
            usage: dict[str, Any] = {"prompt_tokens": ctx, "completion_tokens": out, "total_tokens": ctx + out,
                                     "prompt_tokens_details": {"cached_tokens": cached}}
            if price.provider == "anthropic":
                usage["cache_read_input_tokens"] = cached
                usage["cache_creation_input_tokens"] = write
            payload: dict[str, Any] = {
                "id": f"chatcmpl-{self.seed}-{n}", "litellm_call_id": f"rl-{self.seed}-{n:09d}", "trace_id": session,
                "call_type": "acompletion", "status": "success" if ok else "failure",
                "custom_llm_provider": price.provider, "model": model, "model_group": model,
                "startTime": round(ts, 3), "endTime": round(ts + latency / 1000, 3),
                "response_cost": float(cost_string(cost)) if ok else 0.0,
                "metadata": {"user_api_key_hash": key.key_hash, "user_api_key_alias": key.alias,
                             "user_api_key_user_id": key.user, "user_api_key_team_id": key.team,
                             "user_api_key_org_id": key.org, "usage_object": usage if ok else {}},
                "request_tags": [key.kind],
            }
            if not ok:
                payload["error_information"] = {"error_class": error, "error_code": "429" if error == "RateLimitError"
                                                else "500"}
            yield dumps(payload)

    def labels_csv(self) -> str:
        """The labels as CSV: ``family,key,team,session,start,end,detail``."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["family", "key", "team", "session", "start", "end", "detail"],
                                lineterminator="\n")
        writer.writeheader()
        for label in self.labels:
            writer.writerow(label.to_dict())
        return buffer.getvalue()

    def labels_json(self) -> bytes:
        return orjson.dumps([label.to_dict() for label in self.labels], option=orjson.OPT_INDENT_2)

    def suggested_config(self) -> dict[str, Any]:
        """What a user would write: default detectors, plus a quarterly budget per team.

        Each team's budget is its ordinary pace (mean daily spend over the run without the
        incidents, as its lead would know it) x the days left in the quarter x a headroom factor
        (2.5-3.5x; 1.5-2x for the teams whose traffic then ramps past it).
        """
        budgets = [{"scope": "team", "subject": team, "quarterly_usd": int(amount), "owner": f"{team}-lead@example.com"}
                   for team, amount in self._budget_amounts().items()]
        return {"detectors": {"budget_pace": {"budgets": budgets}}}

    def _budget_amounts(self) -> dict[str, Decimal]:
        """Each team's quarterly budget (USD) from its ordinary pace and headroom factor."""
        days_left = (quarter_bounds(self.start_ts)[2] - self.start_ts) / DAY
        out = {}
        for team, _, _ in self.teams:
            daily = Decimal(self._ordinary_daily.get(team, 0)) / PICO
            out[team] = max(Decimal(50), (daily * Decimal(str(days_left * self.budget_factors[team]))).quantize(Decimal(1)))
        return out


def write_files(traffic: RealisticTraffic, events: Any, labels: Any, config: Any | None = None) -> int:
    """Write the events (.jsonl or .jsonl.gz), labels (.csv or .json) and optionally the YAML config."""
    import gzip

    import yaml

    opener: Any = gzip.open if str(events).endswith(".gz") else open
    count = 0
    with opener(events, "wb") as sink:
        batch: list[bytes] = []
        for line in traffic.litellm_lines():
            batch.append(line)
            if len(batch) >= 4096:
                sink.write(b"\n".join(batch) + b"\n")
                count += len(batch)
                batch.clear()
        if batch:
            sink.write(b"\n".join(batch) + b"\n")
            count += len(batch)
    if str(labels).endswith(".json"):
        with open(labels, "wb") as out:
            out.write(traffic.labels_json())
    else:
        with open(labels, "w", encoding="utf-8") as out:
            out.write(traffic.labels_csv())
    if config is not None:
        with open(config, "w", encoding="utf-8") as out:
            out.write(f"# Budgets for realistic traffic seed {traffic.seed} ({traffic.days:g} days); detectors at "
                      "their defaults.\n" + yaml.safe_dump(traffic.suggested_config(), sort_keys=False))
    return count


__all__ = ["FAMILIES", "Label", "RealisticTraffic", "write_files"]
