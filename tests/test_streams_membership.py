"""A consumer group after kill -9 of a member: the restarted worker gets the partitions.

* :func:`~spendwatch.streams.membership.evict_previous_incarnations` removes the dead member that
  carries the restarted worker's client id (its previous incarnation), and only that one;
* with another client id (a worker that came back under a new name), noida-db keeps electing the
  dead member as the group's leader; :mod:`spendwatch.broker_quirks` evicts it after one session.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spendwatch import broker_quirks
from spendwatch.streams.membership import evict_previous_incarnations

pytestmark = pytest.mark.kafka

MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer
async def main():
    consumer = AIOKafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3], client_id=sys.argv[4],
                                session_timeout_ms=6000, heartbeat_interval_ms=500, rebalance_timeout_ms=6000)
    await consumer.start()
    while True:
        await consumer.getmany(timeout_ms=200)
        if consumer.assignment():
            print("assigned", flush=True)
asyncio.run(main())
"""


def start_member(bootstrap: str, topic: str, group: str, client_id: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", MEMBER, bootstrap, topic, group, client_id], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_assigned(log: Path, proc: subprocess.Popen, timeout: float) -> None:
    """The member prints once it holds partitions (another process: no event to await)."""
    deadline = time.monotonic() + timeout
    while b"assigned" not in log.read_bytes():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no partitions within {timeout}s"
        time.sleep(0.1)


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def group_members(bootstrap: str, group: str) -> list[tuple[str, str]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    return [(m["member_id"], m["client_id"]) for g in response.to_object()["groups"] for m in g["members"]]


def test_a_restarted_worker_removes_only_its_own_dead_incarnation(kafka_bootstrap, make_topics, unique_prefix,
                                                                   tmp_path) -> None:
    topic, group = f"{unique_prefix}-t", f"{unique_prefix}-g"
    make_topics({topic: 4})
    other = start_member(kafka_bootstrap, topic, group, "worker-b", tmp_path / "b.log")
    dead = start_member(kafka_bootstrap, topic, group, "worker-a", tmp_path / "a.log")
    try:
        wait_assigned(tmp_path / "b.log", other, 60)
        wait_assigned(tmp_path / "a.log", dead, 60)
        kill(dead)
        members = asyncio.run(group_members(kafka_bootstrap, group))
        assert sorted(client for _, client in members) == ["worker-a", "worker-b"]
        removed = asyncio.run(evict_previous_incarnations(kafka_bootstrap, group, "worker-a"))
        assert removed == [member for member, client in members if client == "worker-a"]
        # the live member rejoins (the group rebalanced at once); worker-a is gone before its session ended
        remaining = asyncio.run(group_members(kafka_bootstrap, group))
        assert [client for _, client in remaining] == ["worker-b"]
        assert asyncio.run(evict_previous_incarnations(kafka_bootstrap, group, "worker-a")) == []
    finally:
        kill(dead)
        kill(other)


def test_a_dead_leader_under_another_name_is_evicted_on_noida(kafka_bootstrap, make_topics, unique_prefix,
                                                              tmp_path) -> None:
    broker_quirks.apply("noida-db")  # what kafka.broker: noida-db (or the embedded broker) installs
    topic, group = f"{unique_prefix}-t", f"{unique_prefix}-g"
    make_topics({topic: 4})
    dead = start_member(kafka_bootstrap, topic, group, "old-name", tmp_path / "dead.log")
    try:
        wait_assigned(tmp_path / "dead.log", dead, 60)
    finally:
        kill(dead)

    async def successor() -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group, client_id="new-name",
                                    session_timeout_ms=6000, heartbeat_interval_ms=500, rebalance_timeout_ms=6000)
        async with asyncio.timeout(60):  # without the quirk: a follower of the dead leader forever
            await consumer.start()
            try:
                while not consumer.assignment():
                    await consumer.getmany(timeout_ms=200)
            finally:
                await consumer.stop()

    asyncio.run(successor())
    assert [client for _, client in asyncio.run(group_members(kafka_bootstrap, group))] == []
