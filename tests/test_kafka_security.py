"""Kafka authentication and TLS (``kafka.security``): credentials from the environment only, every client gets them."""

from __future__ import annotations

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
