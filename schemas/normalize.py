"""Token and cost normalisation shared by every adapter.

Providers disagree on what "input tokens" means:

======================  =============================================  ==================================
convention              input field                                    cached tokens
======================  =============================================  ==================================
OpenAI chat             ``prompt_tokens`` *includes* cached            ``prompt_tokens_details.cached_tokens``
OpenAI responses        ``input_tokens`` *includes* cached             ``input_tokens_details.cached_tokens``
Anthropic               ``input_tokens`` *excludes* cache reads and    ``cache_read_input_tokens``,
                        cache writes                                   ``cache_creation_input_tokens``
LiteLLM usage object    ``prompt_tokens`` includes both, *and* the     both spellings at once
                        Anthropic fields are repeated beside it
OpenRouter              ``prompt_tokens`` includes cached              ``prompt_tokens_details.cached_tokens``
                                                                       / ``cache_write_tokens``
OpenTelemetry GenAI     ``gen_ai.usage.input_tokens`` includes cached  ``gen_ai.usage.cache_read.input_tokens``
======================  =============================================  ==================================

Every adapter ends in :class:`Tokens` with GatewayEvent semantics: ``input`` includes cache reads
and writes, ``output`` includes reasoning. Where a payload repeats a count under two names
(LiteLLM), it is taken once; where an "inclusive" total is smaller than its own parts, the
sender evidently used the exclusive convention and the parts are added back, so no token is
counted twice and none is lost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ParseError
from .event import MAX_COST_USD, MAX_TOKENS, CostSource, Status
from .pricing import compute_cost


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token counts with GatewayEvent semantics."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output

    def as_event_fields(self) -> dict[str, int]:
        return {
            "input_tokens": self.input,
            "cache_read_tokens": self.cache_read,
            "cache_write_tokens": self.cache_write,
            "output_tokens": self.output,
            "reasoning_tokens": self.reasoning,
        }


# ----------------------------------------------------------------------------- checked reads


def token_count(value: Any, field: str) -> int:
    """A token count from a JSON value: a non-negative integer (or integral float / numeric string).

    >>> token_count(12, "usage.prompt_tokens"), token_count(None, "x"), token_count("7", "x")
    (12, 0, 7)
    >>> token_count(-1, "usage.prompt_tokens")
    Traceback (most recent call last):
    ...
    spendwatch.schemas.errors.ParseError: validation at usage.prompt_tokens: token count must be >= 0, got -1
    """
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ParseError("validation", f"token count must be an integer, got a boolean ({value})", field)
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ParseError("validation", f"token count must be a finite number, got {value}", field)
        if not value.is_integer():
            raise ParseError("validation", f"token count must be a whole number, got {value}", field)
        n = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 24:
        n = int(value)  # OTLP/JSON encodes int64 as strings
    else:
        raise ParseError("validation", f"token count must be an integer, got {type(value).__name__}", field)
    if n < 0:
        raise ParseError("validation", f"token count must be >= 0, got {n}", field)
    if n > MAX_TOKENS:
        raise ParseError("too_large", f"token count {n} exceeds the cap of {MAX_TOKENS}", field)
    return n


def money(value: Any, field: str) -> Decimal | None:
    """A USD amount from a JSON value as an exact Decimal (floats go through their shortest repr).

    >>> money(1.35e-05, "response_cost"), money(None, "x"), money("0.25", "x")
    (Decimal('0.0000135'), None, Decimal('0.25'))
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ParseError("validation", f"cost must be a number, got a boolean ({value})", field)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ParseError("validation", f"cost must be a finite number, got {value}", field)
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    elif isinstance(value, str) and len(value) < 64:
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ParseError("validation", f"cost must be a number, got {value!r}", field) from None
        if not amount.is_finite():
            raise ParseError("validation", f"cost must be a finite number, got {value}", field)
    else:
        raise ParseError("validation", f"cost must be a number, got {type(value).__name__}", field)
    if amount < 0:
        raise ParseError("validation", f"cost must be >= 0, got {amount}", field)
    if amount > MAX_COST_USD:
        raise ParseError("too_large", f"cost {amount} exceeds the cap of {MAX_COST_USD} USD per request", field)
    if amount == 0:
        return Decimal(0)
    return amount.normalize() if amount.as_tuple().exponent < -12 else amount


def text(value: Any, field: str, *, required: bool = False) -> str | None:
    """An identifier-like string: numbers are accepted and stringified; empty means absent."""
    if value is None or value == "":
        if required:
            raise ParseError("validation", "required field is missing", field)
        return None
    if isinstance(value, bool):
        raise ParseError("validation", f"expected a string, got a boolean ({value})", field)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ParseError("validation", f"expected a string, got {value}", field)
        return str(value)
    if not isinstance(value, str):
        raise ParseError("validation", f"expected a string, got {type(value).__name__}", field)
    value = value.strip()
    if not value:
        if required:
            raise ParseError("validation", "required field is empty", field)
        return None
    return value


def mapping(value: Any, field: str) -> Mapping[str, Any]:
    """A JSON object, or an empty one for null."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ParseError("validation", f"expected an object, got {type(value).__name__}", field)
    return value


def epoch_seconds(value: Any, field: str) -> datetime:
    """A UTC datetime from epoch seconds (LiteLLM's ``startTime``) or an ISO-8601 string."""
    if isinstance(value, bool) or value is None:
        raise ParseError("validation", "a timestamp is required", field)
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < 32_503_680_000:
            raise ParseError("validation", f"timestamp {value} is out of range", field)
        if value > 1e12:  # milliseconds
            value = value / 1000
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        return iso_time(value, field)
    raise ParseError("validation", f"timestamp must be a number or an ISO-8601 string, got {type(value).__name__}", field)


def iso_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ParseError("validation", "timestamp must be an ISO-8601 string", field)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ParseError("validation", f"not an ISO-8601 timestamp: {value!r}", field) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def unix_nanos(value: Any, field: str) -> datetime:
    """A UTC datetime from OTLP's ``*UnixNano`` (int64, as a JSON string or number)."""
    n = token_count_like(value, field)
    return datetime.fromtimestamp(n / 1e9, UTC)


def token_count_like(value: Any, field: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ParseError("validation", "required field is missing", field)
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        n = int(value)
    elif isinstance(value, int):
        n = value
    elif isinstance(value, float) and math.isfinite(value):
        n = int(value)
    else:
        raise ParseError("validation", "expected an integer (nanoseconds since the epoch)", field)
    if not 0 <= n < 32_503_680_000 * 10**9:
        raise ParseError("validation", f"timestamp {n} is out of range", field)
    return n


# ----------------------------------------------------------------------------- token conventions


def inclusive(total: int, cache_read: int, cache_write: int, output: int, reasoning: int) -> Tokens:
    """Tokens from counts whose input *should* include cache reads and writes.

    If the reported input is smaller than its own cached parts, the sender evidently excluded
    them (Anthropic-style); the missing parts are added back once. Same for reasoning vs output.

    >>> inclusive(1000, 800, 0, 50, 0)        # OpenAI: 1000 prompt tokens of which 800 cached
    Tokens(input=1000, cache_read=800, cache_write=0, output=50, reasoning=0)
    >>> inclusive(20, 800, 100, 50, 0)        # excluded both: 20 fresh + 800 + 100
    Tokens(input=920, cache_read=800, cache_write=100, output=50, reasoning=0)
    >>> inclusive(820, 800, 100, 50, 0)       # included reads, excluded writes
    Tokens(input=920, cache_read=800, cache_write=100, output=50, reasoning=0)
    """
    if total < cache_read + cache_write:
        total = total + cache_write if total >= cache_read else total + cache_read + cache_write
    if output < reasoning:
        output += reasoning
    return Tokens(total, cache_read, cache_write, output, reasoning)


def exclusive(fresh_input: int, cache_read: int, cache_write: int, output: int, reasoning: int) -> Tokens:
    """Tokens from Anthropic-style counts: ``input_tokens`` excludes cache reads and writes.

    >>> exclusive(20, 800, 100, 50, 0)
    Tokens(input=920, cache_read=800, cache_write=100, output=50, reasoning=0)
    """
    if output < reasoning:
        output += reasoning
    return Tokens(fresh_input + cache_read + cache_write, cache_read, cache_write, output, reasoning)


def first_count(usage: Mapping[str, Any], prefix: str, *paths: str) -> int:
    """The first present count among dotted ``paths`` in ``usage`` (a count repeated under two names is read once)."""
    for path in paths:
        node: Any = usage
        ok = True
        for part in path.split("."):
            if not isinstance(node, Mapping) or node.get(part) is None:
                ok = False
                break
            node = node[part]
        if ok:
            return token_count(node, f"{prefix}{path}")
    return 0


def tokens_from_usage(usage: Mapping[str, Any], prefix: str = "usage.") -> Tokens:
    """Tokens from any OpenAI-, Anthropic-, OpenRouter- or LiteLLM-shaped usage object.

    Parameters
    ----------
    usage
        The usage object.
    prefix
        Its dotted path in the message, for error messages.
    """
    reasoning = first_count(
        usage, prefix, "completion_tokens_details.reasoning_tokens", "output_tokens_details.reasoning_tokens",
        "reasoning_tokens",
    )
    cache_read = first_count(
        usage, prefix, "prompt_tokens_details.cached_tokens", "input_tokens_details.cached_tokens",
        "cache_read_input_tokens", "cached_tokens",
    )
    cache_write = first_count(
        usage, prefix, "prompt_tokens_details.cache_write_tokens", "prompt_tokens_details.cache_creation_tokens",
        "cache_creation_input_tokens", "cache_write_tokens", "input_tokens_details.cache_creation_tokens",
    )
    if usage.get("prompt_tokens") is not None:  # OpenAI chat / LiteLLM / OpenRouter: inclusive
        prompt = token_count(usage["prompt_tokens"], f"{prefix}prompt_tokens")
        output = first_count(usage, prefix, "completion_tokens")
        return inclusive(prompt, cache_read, cache_write, output, reasoning)
    output = first_count(usage, prefix, "output_tokens", "completion_tokens")
    fresh = first_count(usage, prefix, "input_tokens")
    anthropic = "input_tokens_details" not in usage and (
        "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage
    )
    if anthropic:
        return exclusive(fresh, cache_read, cache_write, output, reasoning)
    return inclusive(fresh, cache_read, cache_write, output, reasoning)


# ----------------------------------------------------------------------------- cost


def resolve_cost(
    *,
    gateway_cost: Decimal | None,
    tokens: Tokens,
    model: str,
    provider: str | None,
    status: Status,
    at: datetime,
    compute_missing: bool = True,
) -> dict[str, Any]:
    """``cost_usd``, ``cost_source`` and ``cost_unknown_reason`` for an event.

    Rules (documented in docs/event-schema.md):

    1. The gateway's own cost, when present, is used as is (``gateway``).
    2. Otherwise, a request that consumed no tokens and failed costs 0 (``computed``):
       providers do not bill requests they rejected.
    3. Otherwise the cost is computed from tokens with genai-prices (``computed``).
    4. If the model has no known price, ``cost_usd`` is null, ``cost_source`` is ``unknown``
       and ``cost_unknown_reason`` says why. Never a silent zero.
    """
    if gateway_cost is not None:
        return {"cost_usd": gateway_cost, "cost_source": CostSource.gateway, "cost_unknown_reason": None}
    if status is Status.failure and tokens.total == 0:
        return {"cost_usd": Decimal(0), "cost_source": CostSource.computed, "cost_unknown_reason": None}
    if not compute_missing:
        return {
            "cost_usd": None,
            "cost_source": CostSource.unknown,
            "cost_unknown_reason": "no cost in the message and cost computation is disabled",
        }
    cost, reason = compute_cost(
        model, provider,
        input_tokens=tokens.input, cache_read_tokens=tokens.cache_read, cache_write_tokens=tokens.cache_write,
        output_tokens=tokens.output, at=at,
    )
    if cost is None:
        return {"cost_usd": None, "cost_source": CostSource.unknown, "cost_unknown_reason": reason}
    if cost > MAX_COST_USD:
        raise ParseError("too_large", f"computed cost {cost} exceeds the cap of {MAX_COST_USD} USD", "cost_usd")
    return {"cost_usd": cost, "cost_source": CostSource.computed, "cost_unknown_reason": None}
