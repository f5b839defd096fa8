"""Who sends the synthetic traffic: orgs, teams, API keys and their habits, and the models they use.

Everything here is deterministic in the seed. Prices come from genai-prices through
:mod:`spendwatch.schemas.pricing` (never a hard-coded price list): each catalogue model's
per-token prices are read once as integer pico-dollars so the generator can price a million
requests exactly without a Decimal per token.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from spendwatch.schemas.pricing import compute_cost, price_tier

#: Pico-dollars per US dollar: integer per-token prices stay exact.
PICO = 10**12
_PROBE = 100_000  # below every long-context price tier

#: The models the synthetic organisation uses, as a gateway names them (model, provider).
CATALOGUE: tuple[tuple[str, str], ...] = (
    ("claude-opus-4-1", "anthropic"),
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-haiku-4-5", "anthropic"),
    ("gpt-5", "openai"),
    ("gpt-5-mini", "openai"),
    ("gpt-4o-mini", "openai"),
    ("gemini-2.5-pro", "google"),
    ("gemini-2.5-flash", "google"),
)

TEAM_NAMES = ("platform", "ml-research", "search", "support", "data", "mobile", "growth", "security",
              "payments", "infra", "design", "sales-eng")
_FIRST_NAMES = ("ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jo", "kofi", "lena",
                "mei", "nico", "omar", "pia", "quinn", "ravi", "sara", "tomas", "uma", "vik", "wen", "yusuf", "zoe")

#: Relative load by local hour of day (working hours peak) for people-driven keys.
HOURLY = (0.06, 0.04, 0.03, 0.03, 0.04, 0.07, 0.14, 0.35, 0.70, 0.95, 1.00, 1.00,
          0.80, 0.90, 1.00, 1.00, 0.90, 0.70, 0.45, 0.30, 0.24, 0.18, 0.12, 0.08)
#: Relative load by hour for service (batch) keys: flatter, nightly jobs.
HOURLY_SERVICE = (0.9, 1.1, 1.2, 1.2, 1.0, 0.8, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0,
                  1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """A model's prices in integer pico-dollars per token, and its price tier."""

    model: str
    provider: str
    tier: str
    input: int
    cache_read: int
    cache_write: int
    output: int

    def cost_pico(self, input_tokens: int, cache_read: int, cache_write: int, output_tokens: int) -> int:
        uncached = input_tokens - cache_read - cache_write
        return (uncached * self.input + cache_read * self.cache_read + cache_write * self.cache_write
                + output_tokens * self.output)


def _per_token_pico(model: str, provider: str, at: datetime, **tokens: int) -> int:
    cost, why = compute_cost(model, provider, at=at, **tokens)
    if cost is None:
        raise ValueError(f"catalogue model {model!r} has no price in genai-prices: {why}")
    return int(cost * PICO) // _PROBE


@lru_cache(maxsize=16)
def price_table(day: str) -> dict[str, ModelPrice]:
    """Per-token prices of every :data:`CATALOGUE` model on ``day`` (ISO date), from genai-prices.

    >>> table = price_table("2026-11-02")
    >>> table["claude-opus-4-1"].tier, table["gpt-4o-mini"].tier
    ('frontier', 'economy')
    >>> table["claude-sonnet-4-5"].cost_pico(10_000, 0, 0, 0) / PICO   # $3 per million input tokens
    0.03
    """
    at = datetime.fromisoformat(day)
    out = {}
    for model, provider in CATALOGUE:
        base = _per_token_pico(model, provider, at, input_tokens=_PROBE)
        out[model] = ModelPrice(
            model=model, provider=provider, tier=price_tier(model, provider), input=base,
            cache_read=_per_token_pico(model, provider, at, input_tokens=_PROBE, cache_read_tokens=_PROBE),
            cache_write=_per_token_pico(model, provider, at, input_tokens=_PROBE, cache_write_tokens=_PROBE),
            output=_per_token_pico(model, provider, at, input_tokens=0, output_tokens=_PROBE),
        )
    return out


def most_expensive_model(day: str) -> str:
    """The catalogue model with the highest input price (the 'most expensive frontier model')."""
    table = price_table(day)
    return max(table.values(), key=lambda p: (p.input, p.output)).model


@dataclass(slots=True)
class KeyProfile:
    """One API key and its owner's habits. Rates are sessions per hour at the daily peak."""

    index: int
    key_hash: str
    alias: str
    user: str
    team: str
    org: str
    kind: str  # agent | chat | batch | sparse
    sessions_per_peak_hour: float
    calls_mean: float
    gap_seconds: float
    context_tokens: int
    context_step: int
    output_tokens: int
    cache_ratio: float
    models: tuple[tuple[str, float], ...]
    helper_model: str | None
    failure_rate: float
    weekend_factor: float
    tz_offset_hours: int
    accept_rate: float = 0.0  # sessions that end in an accepted task (agents only)
    active_from: float = 0.0  # epoch seconds: a key created mid-run sends nothing before
    growth_per_day: float = 0.0  # organic linear growth of the rate (0.03 = +3% of the first day's rate a day)
    role: str = "background"  # background | incident:<kind> | negative:<kind>
    tags: tuple[str, ...] = field(default=())


def key_hash(seed: int, index: int) -> str:
    """A stable 64-hex key hash, like the hashed virtual keys LiteLLM stores."""
    return hashlib.sha256(f"spendwatch-synthetic:{seed}:{index}".encode()).hexdigest()


_AGENT_MIXES = (
    (("claude-sonnet-4-5", 0.75), ("claude-haiku-4-5", 0.25)),
    (("claude-sonnet-4-5", 0.55), ("gpt-5", 0.45)),
    (("gpt-5", 0.8), ("gpt-5-mini", 0.2)),
    (("gemini-2.5-pro", 0.7), ("gemini-2.5-flash", 0.3)),
)
_CHAT_MIXES = (
    (("gpt-5-mini", 0.7), ("gpt-5", 0.3)),
    (("claude-haiku-4-5", 0.8), ("claude-sonnet-4-5", 0.2)),
    (("gemini-2.5-flash", 0.9), ("gemini-2.5-pro", 0.1)),
)
_BATCH_MIXES = (
    (("gpt-4o-mini", 1.0),),
    (("gemini-2.5-flash", 0.8), ("gpt-5-mini", 0.2)),
)


def make_key(rng: random.Random, seed: int, index: int, team: str, org: str, kind: str, tz: int,
             role: str = "background") -> KeyProfile:
    """A key of one of the four habits, with randomised but realistic parameters."""
    person = f"{_FIRST_NAMES[index % len(_FIRST_NAMES)]}.{team.split('-')[0]}{index}"
    common = {"index": index, "key_hash": key_hash(seed, index), "user": f"{person}@example.com", "team": team,
              "org": org, "kind": kind, "tz_offset_hours": tz, "role": role}
    if kind == "agent":
        return KeyProfile(
            alias=f"{team}-{person.split('.')[0]}{index}-agent", sessions_per_peak_hour=rng.uniform(1.2, 2.5),
            calls_mean=rng.uniform(14, 26), gap_seconds=rng.uniform(6, 15), context_tokens=rng.randint(12_000, 30_000),
            context_step=rng.randint(800, 2000), output_tokens=rng.randint(500, 1100), cache_ratio=rng.uniform(0.6, 0.85),
            models=rng.choice(_AGENT_MIXES), helper_model=None, failure_rate=rng.uniform(0.005, 0.02),
            weekend_factor=rng.uniform(0.1, 0.3), accept_rate=rng.uniform(0.45, 0.7), tags=("coding-agent",),
            growth_per_day=rng.uniform(0, 0.03), **common)
    if kind == "chat":
        return KeyProfile(
            alias=f"{team}-{person.split('.')[0]}{index}-chat", sessions_per_peak_hour=rng.uniform(1.5, 4),
            calls_mean=rng.uniform(2, 5), gap_seconds=rng.uniform(30, 90), context_tokens=rng.randint(1_500, 6_000),
            context_step=rng.randint(300, 800), output_tokens=rng.randint(250, 600), cache_ratio=rng.uniform(0.0, 0.2),
            models=rng.choice(_CHAT_MIXES), helper_model=None, failure_rate=rng.uniform(0.002, 0.01),
            weekend_factor=rng.uniform(0.15, 0.35), tags=("chat",),
            growth_per_day=rng.uniform(0, 0.03), **common)
    if kind == "batch":
        return KeyProfile(
            alias=f"{team}-svc-batch{index}", sessions_per_peak_hour=rng.uniform(0.5, 1.5),
            calls_mean=rng.uniform(30, 70), gap_seconds=rng.uniform(0.5, 2), context_tokens=rng.randint(2_000, 5_000),
            context_step=0, output_tokens=rng.randint(150, 400), cache_ratio=rng.uniform(0.4, 0.6),
            models=rng.choice(_BATCH_MIXES), helper_model=None, failure_rate=rng.uniform(0.005, 0.015),
            weekend_factor=rng.uniform(0.8, 1.0), tags=("batch",),
            growth_per_day=rng.uniform(0, 0.03), **common)
    if kind == "sparse":
        return KeyProfile(
            alias=f"{team}-{person.split('.')[0]}{index}-scripts", sessions_per_peak_hour=rng.uniform(0.04, 0.1),
            calls_mean=rng.uniform(1, 3), gap_seconds=30, context_tokens=rng.randint(2_000, 20_000),
            context_step=500, output_tokens=rng.randint(300, 1500), cache_ratio=0.0,
            models=(("claude-sonnet-4-5", 0.5), ("gpt-5", 0.5)), helper_model=None, failure_rate=0.01,
            weekend_factor=0.3, tags=("scripts",), **common)
    raise ValueError(f"unknown key kind {kind!r}")


def teams_of(count: int) -> list[tuple[str, str, int]]:
    """``count`` teams as (team, org, UTC offset in hours); two orgs, three time zones."""
    if not 1 <= count <= len(TEAM_NAMES):
        raise ValueError(f"teams must be between 1 and {len(TEAM_NAMES)}, got {count}")
    zones = (0, 1, -5)
    return [(TEAM_NAMES[i], "acme" if i % 3 != 2 else "acme-labs", zones[i % 3]) for i in range(count)]


def background_kinds(count: int, rng: random.Random) -> list[str]:
    """The habit mix of ordinary keys: 40% agents, 35% chat, 15% batch, 10% sparse."""
    pool = ["agent"] * 8 + ["chat"] * 7 + ["batch"] * 3 + ["sparse"] * 2
    return [pool[i % len(pool)] if i < len(pool) else rng.choice(pool) for i in range(count)]
