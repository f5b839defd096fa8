"""Bearer tokens: each maps to the name of the gateway that holds it.

Tokens come from the environment only (see :mod:`spendwatch.streams.ingest.config`) and
are never logged; comparisons take constant time.

>>> tokens = GatewayTokens.from_pairs("litellm-prod=s3cret-a, openrouter=s3cret-b")
>>> tokens.gateway_for("Bearer s3cret-b")
'openrouter'
>>> tokens.gateway_for("Bearer wrong") is None
True
>>> tokens.gateway_for(None) is None
True
>>> sorted(tokens.gateways)
['litellm-prod', 'openrouter']
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from .config import IngestConfig

#: Gateway name used for requests when authentication is switched off.
ANONYMOUS = "anonymous"
#: Shortest token accepted; shorter ones are guessable.
MIN_TOKEN_LENGTH = 8


class TokenConfigError(ValueError):
    """The token configuration is unusable; the message names the variable, never the token."""


class GatewayTokens:
    """Token -> gateway name, compared in constant time."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        for gateway, token in tokens.items():
            if len(token) < MIN_TOKEN_LENGTH:
                raise TokenConfigError(f"the token of gateway {gateway!r} is shorter than {MIN_TOKEN_LENGTH} characters")
        # Keyed by digest so the lookup itself does not compare secrets byte by byte.
        self._by_digest = {_digest(token): gateway for gateway, token in tokens.items()}

    @property
    def gateways(self) -> set[str]:
        return set(self._by_digest.values())

    def __len__(self) -> int:
        return len(self._by_digest)

    @classmethod
    def from_pairs(cls, text: str, source: str = "tokens") -> GatewayTokens:
        """Parse ``gateway=token[,gateway=token...]``."""
        return cls(_parse_pairs(text, source))

    @classmethod
    def from_environment(cls, config: IngestConfig, environ: Mapping[str, str] | None = None) -> GatewayTokens:
        """Read the tokens named by ``config`` from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        tokens = _parse_pairs(env.get(config.tokens_env, ""), config.tokens_env)
        for gateway, env_name in config.token_env_vars.items():
            token = env.get(env_name, "").strip()
            if not token:
                raise TokenConfigError(
                    f"ingest.token_env_vars.{gateway}: environment variable {env_name} is not set or empty"
                )
            tokens[gateway] = token
        if len(set(tokens.values())) != len(tokens):
            raise TokenConfigError("two gateways share one token; give each gateway its own")
        return cls(tokens)

    def gateway_for(self, authorization: str | None) -> str | None:
        """The gateway an ``Authorization`` header value authenticates, or ``None``."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = _digest(token.strip())
        for known, gateway in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return gateway
        return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _parse_pairs(text: str, source: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for n, item in enumerate(filter(None, (part.strip() for part in text.split(","))), start=1):
        gateway, sep, token = item.partition("=")
        gateway, token = gateway.strip(), token.strip()
        if not sep or not gateway or not token:
            raise TokenConfigError(f"{source}: entry {n} is not gateway=token")
        if gateway in tokens:
            raise TokenConfigError(f"{source}: gateway {gateway!r} is listed twice")
        tokens[gateway] = token
    return tokens
