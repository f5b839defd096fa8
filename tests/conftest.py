"""Shared fixtures. The Kafka broker is real (the embedded noida-db), started once per session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from spendwatch.broker import EmbeddedBroker, create_topics


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker for the whole test session; tests isolate themselves by topic name."""
    broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka")).start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_bootstrap(kafka_broker: EmbeddedBroker) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture
def unique_prefix() -> str:
    """A topic/app-id prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_topics(kafka_bootstrap: str):
    def make(topics: dict[str, int]) -> None:
        asyncio.run(create_topics(kafka_bootstrap, topics))

    return make


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
