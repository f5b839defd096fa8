"""A restarted worker takes its dead predecessor's place in the consumer group at once.

A worker killed with ``kill -9`` (or OOM-killed) sends no LeaveGroup: its member stays in
the group until its session times out (``streams.session_timeout_s``), and the group's
next rebalance waits for it. Every worker joins with a client id naming its node (host and
web port, :func:`member_client_id`), which no other live process can share (it would have
to serve the same port on the same host). At start-up, before joining, the worker
therefore asks the group coordinator for the group's members (DescribeGroups) and sends
LeaveGroup for each member carrying its own client id: a previous incarnation of itself,
necessarily dead.

On Apache Kafka this saves the session timeout; on the embedded broker (noida-db 0.2.3) it
is what keeps the group alive at all, since noida-db elects a member that never rejoined
as the leader of the next generation (see :mod:`spendwatch.broker_quirks` for the
fallback when the dead member had another name). Static members (``streams.static_membership``)
are replaced by the broker itself and are left alone. Best effort: an error is logged and
the session timeout applies as before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


def member_client_id(node: str) -> str:
    """The Kafka client id of the worker of node ``node``: how its group member is recognised after a crash."""
    return f"spendwatch-worker-{node}"


async def evict_previous_incarnations(bootstrap_servers: str, group_id: str, client_id: str,
                                      client_options: Mapping[str, Any] | None = None) -> list[str]:
    """Send LeaveGroup for every member of ``group_id`` whose client id is ``client_id``; returns their member ids."""
    from aiokafka import AIOKafkaClient
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import for_code
    from aiokafka.protocol.group import LeaveGroupRequest

    options = dict(client_options or {})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **options)
    await admin.start()
    try:
        coordinator = await admin.find_coordinator(group_id)
        [response] = await admin.describe_consumer_groups([group_id], group_coordinator_id=coordinator)
    finally:
        await admin.close()
    stale = [member["member_id"] for group in response.to_object()["groups"] for member in group["members"]
             if member["client_id"] == client_id]
    if not stale:
        return []
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, **options)
    await client.bootstrap()
    try:
        for member_id in stale:
            answer = await client.send(coordinator, LeaveGroupRequest(group_id, member_id))
            error = for_code(answer.error_code)
            log.warning("group %s: removed member %s, a previous incarnation of this worker (%s) that left "
                        "without leaving the group: %s", group_id, member_id, client_id, error.__name__)
    finally:
        await client.close()
    return stale
