"""The connection options every spendwatch Kafka client gets from ``kafka.security``.

``client_options`` gives aiokafka's keyword arguments (producers, consumers, the admin
client); ``faust_credentials`` the same for the stream worker's Faust app. Secrets are
read from the environment variables the config names, never from the YAML.

SASL mechanisms: PLAIN and SCRAM (a username and password), and OAUTHBEARER with tokens
from an OAuth 2.0 token endpoint (:class:`ClientCredentialsTokens`, the client credentials
grant that Confluent Cloud OAuth, Strimzi with Keycloak and most identity providers offer).

>>> from spendwatch.streams.config import KafkaSecurityConfig
>>> client_options(KafkaSecurityConfig())
{}
>>> opts = client_options(KafkaSecurityConfig(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512"),
...                       environ={"SPENDWATCH_KAFKA_USERNAME": "svc", "SPENDWATCH_KAFKA_PASSWORD": "s3cret"})
>>> opts["security_protocol"], opts["sasl_mechanism"], opts["sasl_plain_username"], type(opts["ssl_context"]).__name__
('SASL_SSL', 'SCRAM-SHA-512', 'svc', 'SSLContext')
>>> client_options(KafkaSecurityConfig(protocol="SASL_PLAINTEXT"), environ={})
Traceback (most recent call last):
...
ValueError: kafka.security.protocol is SASL_PLAINTEXT but SPENDWATCH_KAFKA_USERNAME and SPENDWATCH_KAFKA_PASSWORD are not both set
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiokafka.abc import AbstractTokenProvider

if TYPE_CHECKING:
    from spendwatch.streams.config import KafkaSecurityConfig

#: A token is renewed this long before the identity provider says it expires.
TOKEN_REFRESH_MARGIN_S = 60.0


class TokenError(RuntimeError):
    """The token endpoint refused or failed; the message names the endpoint and its OAuth error, never a secret."""


class ClientCredentialsTokens(AbstractTokenProvider):
    """OAUTHBEARER tokens from an OAuth 2.0 token endpoint, client credentials grant (RFC 6749 section 4.4).

    The client authenticates with HTTP Basic (``client_secret_basic``). A token is reused
    until :data:`TOKEN_REFRESH_MARGIN_S` before its ``expires_in``; every Kafka client of a
    process may share one instance (Faust's consumer runs in its own thread and event loop,
    so the cache is guarded by a thread lock and the request runs in a worker thread).
    """

    def __init__(self, endpoint: str, client_id: str, client_secret: str, *, scope: str | None = None,
                 extensions: Mapping[str, str] | None = None, timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = endpoint
        self._client_id, self._client_secret = client_id, client_secret
        self._scope = scope
        self._extensions = dict(extensions or {})
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def __repr__(self) -> str:  # no secret, no token
        return f"ClientCredentialsTokens({self.endpoint!r})"

    async def token(self) -> str:
        """A valid access token (aiokafka calls this at every SASL handshake)."""
        with self._lock:  # the common case, without a thread hop
            token = self._cached()
        return token if token is not None else await asyncio.to_thread(self.token_now)

    def token_now(self) -> str:
        """:meth:`token`, blocking: the cached token, or a new one from the endpoint."""
        with self._lock:
            token = self._cached()
            if token is None:
                token, lifetime = self._request()
                self._token = token
                self._renew_at = self._clock() + max(0.0, lifetime - TOKEN_REFRESH_MARGIN_S)
            return token

    def _cached(self) -> str | None:
        """The token while it is not due for renewal (call with the lock held)."""
        return self._token if self._token is not None and self._clock() < self._renew_at else None

    def extensions(self) -> dict[str, str]:
        """SASL extensions sent with the token (``kafka.security.oauth_extensions``)."""
        return dict(self._extensions)

    def _request(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        quote = urllib.parse.quote  # RFC 6749 2.3.1: form-encode each part before Basic
        login = f"{quote(self._client_id, safe='')}:{quote(self._client_secret, safe='')}"
        request = urllib.request.Request(
            self.endpoint, data=urllib.parse.urlencode(form).encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
                     "Authorization": "Basic " + base64.b64encode(login.encode()).decode()})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310 - https or loopback
                body = response.read(1 << 20)
        except urllib.error.HTTPError as exc:
            raise TokenError(f"token endpoint {self.endpoint} answered {exc.code}{_oauth_error(exc.read(4096))}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TokenError(f"token endpoint {self.endpoint} unreachable: {getattr(exc, 'reason', exc)}") from None
        try:
            data = json.loads(body)
            access_token, token_type = data["access_token"], str(data.get("token_type", "bearer"))
            lifetime = float(data.get("expires_in", 300))
        except (ValueError, TypeError, KeyError):
            raise TokenError(f"token endpoint {self.endpoint} answered without an access_token") from None
        if not isinstance(access_token, str) or not access_token or token_type.lower() != "bearer":
            raise TokenError(f"token endpoint {self.endpoint} answered a {token_type!r} token; Kafka needs a bearer token")
        return access_token, lifetime


def _oauth_error(body: bytes) -> str:
    """``: <error> (<error_description>)`` from an RFC 6749 error response, if the body is one."""
    try:
        data = json.loads(body)
        error, description = str(data["error"])[:100], str(data.get("error_description") or "")[:300]
    except (ValueError, TypeError, KeyError):
        return ""
    return f": {error}" + (f" ({description})" if description else "")


def ssl_context(security: KafkaSecurityConfig, environ: Mapping[str, str] = os.environ) -> ssl.SSLContext:
    """A TLS context verifying the brokers (``ssl_cafile`` or the system CAs), with the client certificate if any."""
    from aiokafka.helpers import create_ssl_context

    password = environ.get(security.ssl_keyfile_password_env) if security.ssl_keyfile_password_env else None
    return create_ssl_context(cafile=security.ssl_cafile, certfile=security.ssl_certfile,
                              keyfile=security.ssl_keyfile, password=password)


def _sasl_login(security: KafkaSecurityConfig, environ: Mapping[str, str]) -> tuple[str, str]:
    username, password = environ.get(security.sasl_username_env), environ.get(security.sasl_password_env)
    if not username or not password:
        raise ValueError(f"kafka.security.protocol is {security.protocol} but {security.sasl_username_env} and "
                         f"{security.sasl_password_env} are not both set")
    return username, password


_TOKEN_PROVIDERS: dict[tuple[str, str, str, str | None, tuple], ClientCredentialsTokens] = {}
_TOKEN_PROVIDERS_LOCK = threading.Lock()


def token_provider(security: KafkaSecurityConfig, environ: Mapping[str, str] = os.environ) -> ClientCredentialsTokens:
    """The OAUTHBEARER token source for ``security``, one per identity per process (the clients share its token)."""
    client_id, secret = environ.get(security.oauth_client_id_env), environ.get(security.oauth_client_secret_env)
    if not client_id or not secret:
        raise ValueError(f"kafka.security.sasl_mechanism is OAUTHBEARER but {security.oauth_client_id_env} and "
                         f"{security.oauth_client_secret_env} are not both set")
    if not security.oauth_token_endpoint:
        raise ValueError("kafka.security.sasl_mechanism is OAUTHBEARER but oauth_token_endpoint is not set")
    extensions = tuple(sorted(security.oauth_extensions.items()))
    key = (security.oauth_token_endpoint, client_id, secret, security.oauth_scope, extensions)
    with _TOKEN_PROVIDERS_LOCK:
        provider = _TOKEN_PROVIDERS.get(key)
        if provider is None:
            provider = _TOKEN_PROVIDERS[key] = ClientCredentialsTokens(
                security.oauth_token_endpoint, client_id, secret, scope=security.oauth_scope,
                extensions=security.oauth_extensions)
        return provider


def client_options(security: KafkaSecurityConfig, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """aiokafka keyword arguments for ``security`` (empty for PLAINTEXT, aiokafka's default)."""
    if security.protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(security, environ)
    if security.protocol.startswith("SASL_"):
        if security.sasl_mechanism == "OAUTHBEARER":
            options.update(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=token_provider(security, environ))
            return options
        username, password = _sasl_login(security, environ)
        options.update(sasl_mechanism=security.sasl_mechanism, sasl_plain_username=username,
                       sasl_plain_password=password)
    return options


def faust_credentials(security: KafkaSecurityConfig, environ: Mapping[str, str] = os.environ) -> Any:
    """Faust's ``broker_credentials`` for ``security`` (None for PLAINTEXT)."""
    import faust

    if security.protocol == "PLAINTEXT":
        return None
    context = ssl_context(security, environ) if security.protocol in ("SSL", "SASL_SSL") else None
    if security.protocol == "SSL":
        return faust.SSLCredentials(context)
    if security.sasl_mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(oauth_cb=token_provider(security, environ), ssl_context=context)
    username, password = _sasl_login(security, environ)
    return faust.SASLCredentials(username=username, password=password, ssl_context=context,
                                 mechanism=security.sasl_mechanism)
