"""The simulation: hours of sessions for every key, merged into one event-time-ordered stream.

Each hour, every key draws how many sessions it starts (Poisson, scaled by hour-of-day and
weekday/weekend seasonality in its team's time zone, its growth and any scenario); each
session is a run of calls whose context grows call by call, partly read from the prompt
cache, with occasional failures that are retried. Agent sessions may end in an accepted
task (an :class:`~spendwatch.schemas.outcome.OutcomeEvent`) and later a merged PR. Calls
are pushed on a heap and released once no later-starting session can precede them, so
memory stays bounded however long the run.

Each key has its own random stream, so enabling an incident changes only its own key (the
budget incident: its team's keys): ``incidents="none"`` and ``incidents="all"`` produce the same
traffic everywhere else.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from spendwatch.schemas.event import CostSource, GatewayEvent, Status
from spendwatch.schemas.outcome import OutcomeEvent
from spendwatch.traffic.incidents import DAY, HOUR, INCIDENTS, NEGATIVES, GroundTruth, Scenario, SessionPlan, \
    build_scenarios, poisson
from spendwatch.traffic.population import HOURLY, HOURLY_SERVICE, PICO, KeyProfile, ModelPrice, \
    background_kinds, make_key, most_expensive_model, price_table, teams_of

DEFAULT_START = date(2026, 11, 2)  # a Monday
_SUCCESS, _FAILURE = Status.success, Status.failure
_ERRORS = ("rate_limit_error", "api_error", "timeout")
#: Dedicated keys: (role, habit). Incident keys never belong to the budget team.
_DEDICATED = (
    ("runaway_loop", "agent"), ("session_burn", "agent"), ("spend_spike", "agent"), ("model_mix_drift", "agent"),
    ("cache_hit_drop", "agent"), ("efficiency_decay", "agent"), ("error_storm", "agent"),
    ("seasonality", "chat"), ("growth_ramp", "agent"), ("new_key", "agent"), ("sparse_key", "sparse"),
    ("large_session", "agent"),
)
MIN_KEYS = len(_DEDICATED) + 4
BUDGET_TEAM_INDEX = 1


def parse_incidents(spec: str | list[str] | tuple[str, ...] | set[str] | None) -> set[str]:
    """``"all"``, ``"none"`` or a comma-separated list of :data:`INCIDENTS` kinds.

    >>> sorted(parse_incidents("error_storm,runaway_loop"))
    ['error_storm', 'runaway_loop']
    >>> parse_incidents("none")
    set()
    """
    if spec is None or spec == "all":
        return set(INCIDENTS)
    if spec == "none":
        return set()
    kinds = {k.strip() for k in spec.split(",")} if isinstance(spec, str) else set(spec)
    unknown = kinds - set(INCIDENTS)
    if unknown:
        raise ValueError(f"unknown incident kind(s) {sorted(unknown)}; choose from {sorted(INCIDENTS)}")
    return kinds


@dataclass(slots=True)
class Request:
    """One generated call, before it is rendered as a GatewayEvent or JSON."""

    ts: float
    key: KeyProfile
    session_id: str | None
    price: ModelPrice
    ok: bool
    error_type: str | None
    input_tokens: int
    cache_read: int
    cache_write: int
    output_tokens: int
    reasoning: int
    latency_ms: float
    cost_pico: int


@dataclass(slots=True)
class Outcome:
    ts: float
    key: KeyProfile
    session_id: str
    kind: str


def cost_string(pico: int) -> str:
    """Exact decimal dollars from pico-dollars.

    >>> cost_string(1_500_000_000), cost_string(0), cost_string(12_000_000_000_000)
    ('0.0015', '0', '12')
    """
    whole, frac = divmod(pico, PICO)
    return f"{whole}.{frac:012d}".rstrip("0").rstrip(".")


class Traffic:
    """A synthetic organisation over ``days`` days: its keys, scenarios and ground truth.

    Parameters
    ----------
    days
        Length of the run.
    seed
        Everything is deterministic in it.
    start
        First day (UTC midnight); default :data:`DEFAULT_START`, a Monday.
    incidents
        ``"all"``, ``"none"`` or a list of kinds (see :data:`~spendwatch.traffic.incidents.INCIDENTS`).
    keys
        Total number of API keys (at least :data:`MIN_KEYS`; 12 are dedicated to scenarios).
    teams
        Number of teams (2-12), spread over two orgs and three time zones.
    """

    def __init__(self, days: float = 7, seed: int = 1, start: date | datetime | str | None = None,
                 incidents: Any = "all", keys: int = 60, teams: int = 6) -> None:
        if days <= 0:
            raise ValueError("days must be positive")
        if keys < MIN_KEYS:
            raise ValueError(f"keys must be at least {MIN_KEYS} (12 are dedicated to the labelled scenarios)")
        if teams < 2:
            raise ValueError("teams must be at least 2 (one carries the budget incident)")
        self.days, self.seed = days, seed
        start = start or DEFAULT_START
        if isinstance(start, str):
            start = datetime.fromisoformat(start)
        if not isinstance(start, datetime):
            start = datetime(start.year, start.month, start.day)
        self.start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        self.start_ts = self.start.timestamp()
        self.end_ts = self.start_ts + days * DAY
        self.kinds = parse_incidents(incidents)
        self.prices = price_table(self.start.date().isoformat())
        self.expensive_model = most_expensive_model(self.start.date().isoformat())
        self.teams = teams_of(teams)
        self.budget_team = self.teams[BUDGET_TEAM_INDEX][0]
        self.keys = self._population(keys)
        week_start = self.start_ts + max(0.0, days - 7) * DAY
        self.scenarios = build_scenarios(self.kinds, self.dedicated, self.budget_team, week_start, self.end_ts,
                                         self.expensive_model, seed, self.start_ts)
        self._by_key: dict[int, list[Scenario]] = {}
        self._by_team: dict[str, list[Scenario]] = {}
        for sc in self.scenarios:
            if sc.key is not None:
                self._by_key.setdefault(sc.key.index, []).append(sc)
            elif sc.team:
                self._by_team.setdefault(sc.team, []).append(sc)

    # -- population ---------------------------------------------------------------------
    def _population(self, count: int) -> list[KeyProfile]:
        rng = random.Random(self.seed)
        other_teams = [t for i, t in enumerate(self.teams) if i != BUDGET_TEAM_INDEX]
        self.dedicated: dict[str, KeyProfile] = {}
        keys = []
        for i, (role, kind) in enumerate(_DEDICATED):
            team, org, tz = other_teams[i % len(other_teams)]
            key = make_key(random.Random(self.seed * 1_000_003 + i), self.seed, i, team, org, kind, tz,
                           role=("negative:" if role in NEGATIVES else "incident:") + role)
            if role in ("model_mix_drift", "cache_hit_drop"):
                key.models = (("claude-sonnet-4-5", 0.7), ("claude-haiku-4-5", 0.3))
                key.cache_ratio, key.sessions_per_peak_hour, key.context_tokens = 0.75, 3.5, 30_000
            if role == "spend_spike":  # a busy key: its spike is worth dollars, not cents
                key.sessions_per_peak_hour, key.context_tokens = 4.0, 40_000
                key.models = (("claude-sonnet-4-5", 0.8), ("claude-haiku-4-5", 0.2))
            if role == "efficiency_decay":  # a busy key: its decay is worth a page
                key.sessions_per_peak_hour, key.context_tokens, key.accept_rate = 2.5, 25_000, 0.6
            if role == "seasonality":
                key.weekend_factor = 0.05
            if role == "new_key":
                key.active_from = self.start_ts + min(self.days * 0.5, 3.5) * DAY
            self.dedicated[role] = key
            keys.append(key)
        for j, kind in enumerate(background_kinds(count - len(_DEDICATED), rng)):
            i = len(_DEDICATED) + j
            team, org, tz = self.teams[j % len(self.teams)]
            keys.append(make_key(random.Random(self.seed * 1_000_003 + i), self.seed, i, team, org, kind, tz))
        return keys

    # -- ground truth ----------------------------------------------------------------------
    def ground_truth(self) -> list[GroundTruth]:
        """Every enabled incident and every negative scenario, incidents first."""
        truths = [sc.truth() for sc in self.scenarios if sc.start < self.end_ts]
        return sorted(truths, key=lambda t: (t.negative, t.start))

    # -- simulation ----------------------------------------------------------------------
    def _rate(self, key: KeyProfile, ts: float) -> float:
        local = datetime.fromtimestamp(ts + key.tz_offset_hours * HOUR, UTC)
        curve = HOURLY_SERVICE if key.kind == "batch" else HOURLY
        rate = key.sessions_per_peak_hour * curve[local.hour]
        if local.weekday() >= 5:
            rate *= key.weekend_factor
        if key.growth_per_day:
            rate *= 1.0 + key.growth_per_day * max(0.0, ts - self.start_ts) / DAY
        for sc in self._by_key.get(key.index, ()):
            rate *= sc.rate_factor(ts)
        for sc in self._by_team.get(key.team, ()):
            rate *= sc.rate_factor(ts)
        return rate

    def records(self) -> Iterator[Request | Outcome]:
        """Every call and outcome in event-time order (ties broken deterministically)."""
        heap: list[tuple[float, int, Request | Outcome]] = []
        seq = 0
        rngs = {k.index: random.Random(self.seed * 1_000_003 + 7 + k.index * 31) for k in self.keys}
        counters = {k.index: 0 for k in self.keys}
        plan_rng = random.Random(self.seed * 104_729 + 3)
        pending_plans = sorted(((p.start, sc.key.index, p, sc.key) for sc in self.scenarios for p in sc.plans
                                if sc.key is not None), key=lambda x: (x[0], x[1]))
        hours = math.ceil((self.end_ts - self.start_ts) / HOUR)

        def push(item: Request | Outcome) -> None:
            nonlocal seq
            if item.ts < self.end_ts:
                heapq.heappush(heap, (item.ts, seq, item))
                seq += 1

        for h in range(hours):
            h0 = self.start_ts + h * HOUR
            h1 = min(h0 + HOUR, self.end_ts)
            for key in self.keys:
                if key.active_from >= h1:
                    continue
                rng = rngs[key.index]
                for _ in range(poisson(rng, self._rate(key, h0 + 1800) * (h1 - h0) / HOUR)):
                    t = h0 + rng.random() * (h1 - h0)
                    if t < key.active_from:
                        continue
                    counters[key.index] += 1
                    self._session(key, rng, t, f"s{key.index:03d}-{counters[key.index]:06d}", push)
            while pending_plans and pending_plans[0][0] < h1:
                _, _, plan, key = pending_plans.pop(0)
                self._planned(key, plan_rng, plan, push)
            while heap and heap[0][0] < h1:
                yield heapq.heappop(heap)[2]
        while heap:
            yield heapq.heappop(heap)[2]

    def _call(self, key: KeyProfile, rng: random.Random, ts: float, sid: str | None, price: ModelPrice, ctx: int,
              out: int, ratio: float, first: bool, failure_rate: float,
              error_types: tuple[str, ...] = _ERRORS) -> Request:
        if rng.random() < failure_rate:
            return Request(ts, key, sid, price, False, rng.choice(error_types), 0, 0, 0, 0, 0,
                           rng.uniform(200, 30_000), 0)
        cached = int(ctx * ratio * (0.5 if first else rng.uniform(0.9, 1.05)))
        cached = min(cached, ctx)
        write = min(ctx - cached, key.context_step or ctx // 10) if price.provider == "anthropic" and ratio > 0.05 else 0
        reasoning = out // 2 if price.model.startswith("gpt-5") else 0
        cost = price.cost_pico(ctx, cached, write, out)
        latency = 300 + out * 12 + ctx / 80
        return Request(ts, key, sid, price, True, None, ctx, cached, write, out, reasoning, round(latency, 1), cost)

    def _session(self, key: KeyProfile, rng: random.Random, t: float, sid: str, push: Any) -> None:
        scenarios = self._by_key.get(key.index, ())
        weights = key.models
        ratio = key.cache_ratio
        size = 1.0
        for sc in scenarios:
            weights = sc.model_weights(t) or weights
            r = sc.cache_ratio(t)
            ratio = ratio if r is None else r
            size *= sc.size_factor(t)
        cumulative = list(accumulate(w for _, w in weights))
        primary = weights[bisect(cumulative, rng.random() * cumulative[-1]) if len(weights) > 1 else 0][0]
        calls = max(1, int(rng.lognormvariate(math.log(key.calls_mean * size) - 0.18, 0.6)))
        ctx = int(key.context_tokens * rng.uniform(0.6, 1.4) * size)
        for i in range(calls):
            model = primary if rng.random() > 0.1 else weights[-1][0]
            price = self.prices[model]
            out = max(20, int(key.output_tokens * rng.lognormvariate(-0.12, 0.5)))
            req = self._call(key, rng, t, sid, price, min(ctx, 180_000), out, ratio, i == 0, key.failure_rate)
            push(req)
            if not req.ok:  # retried after a short back-off
                t += rng.uniform(1, 8)
                req = self._call(key, rng, t, sid, price, min(ctx, 180_000), out, ratio, i == 0, 0.0)
                push(req)
            t += req.latency_ms / 1000 + key.gap_seconds * rng.expovariate(1.0)
            ctx += int(key.context_step * size * rng.uniform(0.5, 1.5))
        if key.accept_rate and rng.random() < key.accept_rate:
            push(Outcome(t + rng.uniform(120, 1200), key, sid, "task_accepted"))
            if rng.random() < 0.35:
                push(Outcome(t + rng.uniform(2 * HOUR, 10 * HOUR), key, sid, "pr_merged"))

    def _planned(self, key: KeyProfile, rng: random.Random, plan: SessionPlan, push: Any) -> None:
        t = plan.start
        price = self.prices[plan.model]
        first = True
        while t < plan.end:
            ctx = rng.randint(*plan.context)
            out = rng.randint(*plan.output)
            push(self._call(key, rng, t, plan.session_id, price, ctx, out, plan.cache_ratio, first, plan.failure_rate,
                            plan.error_types))
            first = False
            t += rng.uniform(*plan.gap)


# -- rendering ----------------------------------------------------------------------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _when(ts: float) -> datetime:
    """Event time at millisecond precision, computed exactly (no float drift between renderings)."""
    return _EPOCH + timedelta(milliseconds=round(ts * 1000))


def _iso(ts: float) -> str:
    return _when(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_dict(req: Request, event_id: str) -> dict[str, Any]:
    """The canonical JSON object of a generated call (what ``dumps(GatewayEvent)`` would write)."""
    key = req.key
    out: dict[str, Any] = {
        "event_id": event_id, "event_time": _iso(req.ts), "gateway": "litellm",
        "api_key_hash": key.key_hash, "api_key_alias": key.alias, "user": key.user, "team": key.team,
        "org": key.org, "tags": list(key.tags), "session_id": req.session_id, "model": req.price.model,
        "provider": req.price.provider, "status": "success" if req.ok else "failure",
        "input_tokens": req.input_tokens, "cache_read_tokens": req.cache_read, "cache_write_tokens": req.cache_write,
        "output_tokens": req.output_tokens, "reasoning_tokens": req.reasoning, "cost_usd": cost_string(req.cost_pico),
        "cost_source": "gateway", "latency_ms": req.latency_ms,
    }
    if req.session_id is None:
        del out["session_id"]
    if req.error_type:
        out["error_type"] = req.error_type
    return out


def outcome_dict(outcome: Outcome, outcome_id: str) -> dict[str, Any]:
    key = outcome.key
    return {"outcome_id": outcome_id, "event_time": _iso(outcome.ts), "kind": outcome.kind, "value": 1.0,
            "api_key_hash": key.key_hash, "user": key.user, "team": key.team, "session_id": outcome.session_id,
            "source": "github" if outcome.kind == "pr_merged" else "agent-harness", "attributes": {}}


def _trusted(cls: Any, values: dict[str, Any]) -> Any:
    """A pydantic model from already-valid values, skipping validation (what ``model_construct`` does, cheaper).

    The generator only produces valid values; tests check every rendering validates to the same model.
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def to_record(item: Request | Outcome, n: int, seed: int) -> Any:
    """A :class:`GatewayEvent` or :class:`OutcomeEvent` (built without re-validation: the generator is trusted)."""
    when = _when(item.ts)
    key = item.key
    if isinstance(item, Outcome):
        return _trusted(OutcomeEvent, {
            "outcome_id": f"out-{seed}-{n}", "event_time": when, "kind": item.kind, "value": 1.0,
            "api_key_hash": key.key_hash, "user": key.user, "team": key.team, "session_id": item.session_id,
            "source": "github" if item.kind == "pr_merged" else "agent-harness", "attributes": {}})
    return _trusted(GatewayEvent, {
        "event_id": f"evt-{seed}-{n}", "event_time": when, "gateway": "litellm", "api_key_hash": key.key_hash,
        "api_key_alias": key.alias, "user": key.user, "team": key.team, "org": key.org, "project": None,
        "tags": key.tags, "session_id": item.session_id, "model": item.price.model, "provider": item.price.provider,
        "status": _SUCCESS if item.ok else _FAILURE, "error_type": item.error_type,
        "input_tokens": item.input_tokens, "cache_read_tokens": item.cache_read, "cache_write_tokens": item.cache_write,
        "output_tokens": item.output_tokens, "reasoning_tokens": item.reasoning,
        "cost_usd": Decimal(cost_string(item.cost_pico)), "cost_source": CostSource.gateway,
        "cost_unknown_reason": None, "latency_ms": item.latency_ms,
    })
