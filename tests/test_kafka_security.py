"""Kafka authentication and TLS (``kafka.security``): credentials from the environment only, every client gets them."""

from __future__ import annotations

import json
from pathlib import Path

import faust
import pytest

from spendwatch.config import ConfigError, Settings, load_config
from spendwatch.kafka_security import client_options
from spendwatch.streams.app import create_app
from spendwatch.streams.config import KafkaSecurityConfig

LOGIN = {"SPENDWATCH_KAFKA_USERNAME": "svc-spendwatch", "SPENDWATCH_KAFKA_PASSWORD": "s3cret-api-key"}


def test_a_password_written_into_the_yaml_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "spendwatch.yaml"
    path.write_text("kafka:\n  security:\n    protocol: SASL_SSL\n    sasl_password: s3cret-api-key\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    [issue] = info.value.issues
    assert issue.path == "kafka.security.sasl_password" and "sasl_password_env" in issue.hint
    assert "s3cret-api-key" not in str(issue)


def test_sasl_ssl_options_for_aiokafka_clients() -> None:
    options = client_options(KafkaSecurityConfig(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256"), LOGIN)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc-spendwatch", "s3cret-api-key")
    assert options["ssl_context"].check_hostname  # brokers are verified


def test_missing_credentials_name_the_variables_not_the_values() -> None:
    with pytest.raises(ValueError, match="SPENDWATCH_KAFKA_PASSWORD"):
        client_options(KafkaSecurityConfig(protocol="SASL_SSL"), {"SPENDWATCH_KAFKA_USERNAME": "svc"})


def test_the_stream_worker_app_connects_with_the_same_credentials(tmp_path: Path, monkeypatch) -> None:
    for name, value in LOGIN.items():
        monkeypatch.setenv(name, value)
    settings = Settings.model_validate({
        "data_dir": str(tmp_path), "kafka": {"security": {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"}}})
    app = create_app(settings, bootstrap_servers="broker-1.example.com:9096", web_port=6066).app
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.username == "svc-spendwatch" and credentials.ssl_context is not None


def test_plaintext_by_default() -> None:
    assert client_options(Settings().kafka.security, LOGIN) == {}


# -- OAUTHBEARER ----------------------------------------------------------------------------------------------------

OAUTH_ENV = {"SPENDWATCH_KAFKA_OAUTH_CLIENT_ID": "spendwatch worker", "SPENDWATCH_KAFKA_OAUTH_CLIENT_SECRET": "s3cret:&"}


class TokenEndpoint:
    """An OAuth 2.0 token endpoint on loopback that checks what a real one checks (RFC 6749 4.4 and 2.3.1)."""

    def __init__(self, client_id: str, secret: str, *, scope: str | None = None, lifetime: int = 3600) -> None:
        import base64
        import http.server
        import threading
        import urllib.parse

        self.requests = 0
        self.reject_with: tuple[int, dict] | None = None
        endpoint = self
        quote = urllib.parse.quote
        expected_auth = "Basic " + base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                endpoint.requests += 1
                if endpoint.reject_with:
                    return self._answer(*endpoint.reject_with)
                if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                    return self._answer(400, {"error": "invalid_request"})
                if self.headers.get("Authorization") != expected_auth:
                    return self._answer(401, {"error": "invalid_client", "error_description": "bad client login"})
                if form.get("grant_type") != ["client_credentials"]:
                    return self._answer(400, {"error": "unsupported_grant_type"})
                if scope is not None and form.get("scope") != [scope]:
                    return self._answer(400, {"error": "invalid_scope"})
                return self._answer(200, {"access_token": f"token-{endpoint.requests}", "token_type": "Bearer",
                                          "expires_in": lifetime})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_endpoint():
    endpoint = TokenEndpoint(*OAUTH_ENV.values(), scope="kafka")
    yield endpoint
    endpoint.close()


def oauth_security(url: str, **extra: object) -> KafkaSecurityConfig:
    return KafkaSecurityConfig(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", oauth_token_endpoint=url,
                               oauth_scope="kafka", **extra)


def test_oauthbearer_clients_get_tokens_from_the_token_endpoint_and_reuse_them(token_endpoint) -> None:
    import asyncio

    from aiokafka.conn import OAuthAuthenticator

    security = oauth_security(token_endpoint.url, oauth_extensions={"logicalCluster": "lkc-1", "identityPoolId": "p-1"})
    options = client_options(security, OAUTH_ENV)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "OAUTHBEARER"
    assert options["ssl_context"].check_hostname
    provider = options["sasl_oauth_token_provider"]
    assert client_options(security, OAUTH_ENV)["sasl_oauth_token_provider"] is provider  # one per identity

    # what aiokafka sends in the SASL handshake: the token and the extensions
    authenticator = OAuthAuthenticator(sasl_oauth_token_provider=provider)
    first_step = asyncio.run(authenticator.step(None))
    message = first_step[0].decode()
    assert message.startswith("n,,\x01auth=Bearer token-1\x01")
    assert "logicalCluster=lkc-1" in message and "identityPoolId=p-1" in message
    assert asyncio.run(provider.token()) == "token-1" and token_endpoint.requests == 1  # reused until near expiry
    assert "s3cret" not in repr(provider)


def test_an_oauth_token_is_renewed_before_it_expires(token_endpoint) -> None:
    from spendwatch.kafka_security import TOKEN_REFRESH_MARGIN_S, ClientCredentialsTokens

    now = [1000.0]
    provider = ClientCredentialsTokens(token_endpoint.url, *OAUTH_ENV.values(), scope="kafka", clock=lambda: now[0])
    assert provider.token_now() == "token-1"
    now[0] += 3600 - TOKEN_REFRESH_MARGIN_S - 1
    assert provider.token_now() == "token-1"
    now[0] += 2  # inside the margin: a new one
    assert provider.token_now() == "token-2" and token_endpoint.requests == 2


def test_a_refused_client_gets_the_oauth_error_and_never_the_secret(token_endpoint) -> None:
    from spendwatch.kafka_security import ClientCredentialsTokens, TokenError

    provider = ClientCredentialsTokens(token_endpoint.url, "spendwatch worker", "wrong-secret", scope="kafka")
    with pytest.raises(TokenError, match=r"answered 401: invalid_client \(bad client login\)") as info:
        provider.token_now()
    assert "wrong-secret" not in str(info.value)
    token_endpoint.reject_with = (503, {"detail": "maintenance"})
    with pytest.raises(TokenError, match="answered 503$"):
        ClientCredentialsTokens(token_endpoint.url, *OAUTH_ENV.values()).token_now()


def test_oauthbearer_needs_an_https_endpoint_and_both_variables() -> None:
    with pytest.raises(ValueError, match="needs oauth_token_endpoint"):
        KafkaSecurityConfig(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER")
    with pytest.raises(ValueError, match="must be an https URL"):
        oauth_security("http://idp.example.com/oauth2/token")
    with pytest.raises(ValueError, match="SPENDWATCH_KAFKA_OAUTH_CLIENT_SECRET"):
        client_options(oauth_security("https://idp.example.com/oauth2/token"),
                       {"SPENDWATCH_KAFKA_OAUTH_CLIENT_ID": "svc"})


def test_the_stream_worker_app_uses_the_same_token_source(tmp_path: Path, monkeypatch, token_endpoint) -> None:
    for name, value in OAUTH_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings.model_validate({"data_dir": str(tmp_path), "kafka": {"security": {
        "protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "oauth_token_endpoint": token_endpoint.url,
        "oauth_scope": "kafka"}}})
    credentials = create_app(settings, bootstrap_servers="broker-1.example.com:9096", web_port=6066).app.conf.broker_credentials
    assert isinstance(credentials, faust.OAuthCredentials) and credentials.protocol.value == "SASL_SSL"
    assert credentials.oauth_cb is client_options(settings.kafka.security)["sasl_oauth_token_provider"]
    assert credentials.oauth_cb.token_now() == "token-1"
