"""The connection options every spendwatch Kafka client gets from ``kafka.security``.

``client_options`` gives aiokafka's keyword arguments (producers, consumers, the admin
client); ``faust_credentials`` the same for the stream worker's Faust app. Secrets are
read from the environment variables the config names, never from the YAML.

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

import os
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spendwatch.streams.config import KafkaSecurityConfig


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


def client_options(security: KafkaSecurityConfig, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """aiokafka keyword arguments for ``security`` (empty for PLAINTEXT, aiokafka's default)."""
    if security.protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(security, environ)
    if security.protocol.startswith("SASL_"):
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
    username, password = _sasl_login(security, environ)
    return faust.SASLCredentials(username=username, password=password, ssl_context=context,
                                 mechanism=security.sasl_mechanism)
