"""LLM prices from `genai-prices <https://github.com/pydantic/genai-prices>`_: exact costs and price tiers.

Everything here is cached: detectors and adapters call it once per event.

Token semantics are OpenTelemetry's (and :class:`~spendwatch.schemas.event.GatewayEvent`'s):
``input_tokens`` *includes* cache-read and cache-write tokens. genai-prices uses the same
semantics, so counts pass through unchanged.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from genai_prices import Usage, data_snapshot
from pydantic import BaseModel, ConfigDict, Field

#: Provider names gateways use that genai-prices spells differently.
PROVIDER_ALIASES: dict[str, str] = {
    "gemini": "google",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "vertex": "google",
    "google_genai": "google",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "azure_ai": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "xai": "x-ai",
    "x_ai": "x-ai",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "meta_llama": "meta",
    "text-completion-openai": "openai",
}

_ONE_MILLION = Decimal(1_000_000)


class TierThresholds(BaseModel):
    """Where the price tiers split, on the model's input price in USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frontier_min_input_per_mtok: Decimal = Field(
        default=Decimal("2.0"), ge=0,
        description="A model whose input price is at least this (USD per million tokens) is 'frontier'.",
    )
    economy_max_input_per_mtok: Decimal = Field(
        default=Decimal("0.5"), ge=0,
        description="A model whose input price is at most this (USD per million tokens) is 'economy'; "
        "in between is 'standard'.",
    )


DEFAULT_TIERS = TierThresholds()


def _snapshot() -> Any:
    return data_snapshot.get_snapshot()


def _candidates(model: str, provider: str | None) -> list[tuple[str, str | None]]:
    """(model_ref, provider_id) pairs to try, most specific first.

    Gateways prefix models with a provider (``anthropic/claude-...``, ``openai/gpt-4o``,
    ``bedrock/anthropic.claude-...``); the prefix is a provider hint when no provider is given.
    """
    model = model.strip()
    prov = provider.strip().lower() if provider else None
    prov = PROVIDER_ALIASES.get(prov, prov) if prov else None
    out: list[tuple[str, str | None]] = [(model, prov)]
    if "/" in model:
        prefix, rest = model.split("/", 1)
        prefix = PROVIDER_ALIASES.get(prefix.lower(), prefix.lower())
        out += [(rest, prefix), (rest, prov)]
        if "/" in rest:  # openrouter/anthropic/claude-..., bedrock/us/...
            prefix2, rest2 = rest.split("/", 1)
            out += [(rest2, PROVIDER_ALIASES.get(prefix2.lower(), prefix2.lower())), (rest2, None)]
        out += [(rest, None)]
    out.append((model, None))
    seen: set[tuple[str, str | None]] = set()
    return [c for c in out if not (c in seen or seen.add(c))]


@lru_cache(maxsize=8192)
def find_model(model: str, provider: str | None) -> tuple[Any, Any] | None:
    """The genai-prices ``(Provider, ModelInfo)`` for a model as a gateway names it, or ``None``."""
    snap = _snapshot()
    for ref, prov in _candidates(model, provider):
        if not ref:
            continue
        try:
            return snap.find_provider_model(ref, None, prov, None)
        except LookupError:
            continue
    return None


def _timestamp_key(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _model_price(model: str, provider: str | None, at: datetime) -> Any:
    """The genai-prices ``ModelPrice`` in force at ``at`` (prices can change by date and by time of day)."""
    found = find_model(model, provider)
    if found is None:
        return None
    _, info = found
    return info.get_prices(at)


_linear_cache: dict[int, tuple[Any, tuple[Decimal, ...] | None]] = {}


def _linear_price(price: Any) -> tuple[Any, ...] | None:
    """Prices per request (x 1e6), then per Mtok (flat or tiered): input, cache read, cache write,
    output; cached per ``ModelPrice`` object. ``None`` when the price needs genai-prices' full model.

    genai-prices' own calculation builds a usage object and walks its unit registry per call
    (~1 ms); for the common flat price the same arithmetic is done here directly. A missing cache
    price means cached tokens cost the input price, as in genai-prices (checked by a test).
    """
    cached = _linear_cache.get(id(price))
    if cached is not None and cached[0] is price:
        return cached[1]  # type: ignore[return-value]
    result = _compute_linear(price)
    if len(_linear_cache) > 65536:
        _linear_cache.clear()
    _linear_cache[id(price)] = (price, result)
    return result


def _is_price(value: Any) -> bool:
    return isinstance(value, Decimal) or (
        isinstance(getattr(value, "base", None), Decimal) and isinstance(getattr(value, "tiers", None), list)
    )


def _at_volume(price: Any, input_tokens: int) -> Decimal:
    """A flat price, or the tier of a ``TieredPrices`` that ``input_tokens`` falls in (genai-prices' cliff rule)."""
    if isinstance(price, Decimal):
        return price
    for tier in reversed(price.tiers):
        if input_tokens > tier.start:
            return tier.price
    return price.base


def _compute_linear(price: Any) -> tuple[Any, Any, Any, Any, Any] | None:
    values = [getattr(price, key, None) for key in ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")]
    per_input, per_read, per_write, per_output = values
    if not _is_price(per_input) or not _is_price(per_output):
        return None
    if not all(v is None or _is_price(v) for v in (per_read, per_write)):
        return None
    try:  # what a request costs before any token: per-request fees (e.g. Perplexity)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per_request = Decimal(price.calc_price(Usage(input_tokens=0, output_tokens=0))["total_price"])
    except (ValueError, TypeError, ArithmeticError):
        return None
    return (
        per_request * _ONE_MILLION,
        per_input,
        per_read if per_read is not None else per_input,
        per_write if per_write is not None else per_input,
        per_output,
    )


def compute_cost(
    model: str,
    provider: str | None,
    *,
    input_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    output_tokens: int = 0,
    at: datetime | None = None,
) -> tuple[Decimal | None, str | None]:
    """Exact cost in USD of one request, or ``(None, reason)`` when the model has no known price.

    Parameters
    ----------
    model, provider
        As the gateway names them; provider prefixes in the model (``openai/gpt-4o``) are understood.
    input_tokens
        All prompt tokens, cache reads and writes *included* (OTel semantics).
    cache_read_tokens, cache_write_tokens, output_tokens
        The parts of ``input_tokens`` read from / written to the prompt cache, and all completion
        tokens (reasoning included).
    at
        When the request happened (prices change over time); ``None`` means now.

    Returns
    -------
    tuple
        ``(cost, None)`` or ``(None, reason)``.

    Examples
    --------
    >>> cost, why = compute_cost("gpt-4o", "openai", input_tokens=1_000, output_tokens=100)
    >>> cost, why
    (Decimal('0.0035'), None)
    >>> compute_cost("my-finetune-7b", None, input_tokens=10)
    (None, "no price known for model 'my-finetune-7b'")
    """
    price = _model_price(model, provider, _timestamp_key(at))
    if price is None:
        who = f" (provider {provider!r})" if provider else ""
        return None, f"no price known for model {model!r}{who}"
    linear = _linear_price(price)
    if linear is not None:
        per_request, per_input, per_read, per_write, per_output = linear
        fresh = input_tokens - cache_read_tokens - cache_write_tokens
        if fresh >= 0:
            n = input_tokens
            return (
                (per_request + _at_volume(per_input, n) * fresh + _at_volume(per_read, n) * cache_read_tokens
                 + _at_volume(per_write, n) * cache_write_tokens + _at_volume(per_output, n) * output_tokens)
                / _ONE_MILLION,
                None,
            )
    usage = Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read_tokens or None,
        cache_write_tokens=cache_write_tokens or None,
        output_tokens=output_tokens,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            total = price.calc_price(usage)["total_price"]
    except (ValueError, TypeError, ArithmeticError) as exc:
        return None, f"cannot price model {model!r}: {exc}"
    return Decimal(total), None


def _flat(price: Any) -> Decimal | None:
    if price is None:
        return None
    if isinstance(price, Decimal):
        return price
    base = getattr(price, "base", None)  # TieredPrices: the price below the first tier
    return base if isinstance(base, Decimal) else None


@lru_cache(maxsize=8192)
def input_price_per_mtok(model: str, provider: str | None) -> Decimal | None:
    """Current input price in USD per million tokens, or ``None`` if unknown.

    >>> input_price_per_mtok("gpt-4o", "openai")
    Decimal('2.5')
    """
    price = _model_price(model, provider, datetime.now(UTC))
    return _flat(getattr(price, "input_mtok", None)) if price is not None else None


@lru_cache(maxsize=4096)
def input_micros_per_token(model: str, provider: str | None) -> float:
    """Input price in micro-dollars per token (= USD per million tokens) as a float, 0.0 when unknown.

    >>> input_micros_per_token("gpt-4o", "openai"), input_micros_per_token("no-such-model", None)
    (2.5, 0.0)
    """
    price = input_price_per_mtok(model, provider)
    return float(price) if price is not None else 0.0


@lru_cache(maxsize=4096)
def cache_read_micros_per_token(model: str, provider: str | None) -> float:
    """Cache-read price in micro-dollars per token as a float: the input price when the model lists none
    (as genai-prices bills it), 0.0 when the model is unknown.

    >>> cache_read_micros_per_token("claude-sonnet-4-5", "anthropic"), cache_read_micros_per_token("gpt-4o", "openai")
    (0.3, 1.25)
    >>> cache_read_micros_per_token("no-such-model", None)
    0.0
    """
    price = _model_price(model, provider, datetime.now(UTC))
    read = _flat(getattr(price, "cache_read_mtok", None)) if price is not None else None
    return float(read) if read is not None else input_micros_per_token(model, provider)


@lru_cache(maxsize=8192)
def output_price_per_mtok(model: str, provider: str | None) -> Decimal | None:
    """Current output price in USD per million tokens, or ``None`` if unknown."""
    price = _model_price(model, provider, datetime.now(UTC))
    return _flat(getattr(price, "output_mtok", None)) if price is not None else None


@lru_cache(maxsize=8192)
def price_tier(model: str, provider: str | None, thresholds: TierThresholds = DEFAULT_TIERS) -> str:
    """``frontier``, ``standard``, ``economy`` or ``unknown``, from the model's input price.

    No model list is hard-coded: the tier follows the price table, so a new model is tiered
    the day genai-prices lists it.

    >>> price_tier("claude-opus-4-1", "anthropic"), price_tier("gpt-4o-mini", "openai")
    ('frontier', 'economy')
    >>> price_tier("my-finetune-7b", None)
    'unknown'
    """
    price = input_price_per_mtok(model, provider)
    if price is None:
        return "unknown"
    if price >= thresholds.frontier_min_input_per_mtok:
        return "frontier"
    if price <= thresholds.economy_max_input_per_mtok:
        return "economy"
    return "standard"
