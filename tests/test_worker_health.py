"""The worker's /healthz: fails once the worker waited longer than streams.unassigned_unhealthy_s for partitions."""

from __future__ import annotations

from spendwatch.config import Settings
from spendwatch.streams.app import create_app
from spendwatch.streams.worker import mount_observability


async def test_liveness_fails_while_the_group_does_not_settle_and_recovers_with_an_assignment(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path).model_copy(deep=True)
    settings.streams.unassigned_unhealthy_s = 120
    streams = create_app(settings, bootstrap_servers="127.0.0.1:1", web_port=1)
    now = [1000.0]
    checks = mount_observability(streams, clock=lambda: now[0])
    app = streams.app

    now[0] += 119
    assert (await checks.liveness())[0]  # still joining, within the limit
    now[0] += 2
    ok, report = await checks.liveness()
    assert not ok and "no partition assignment for 121 s" in report["partitions"]

    await app.on_partitions_assigned.send(set())  # settled, with no partitions: more workers than partitions
    assert await checks.liveness() == (True, {"partitions": "ok"})
    assert (await checks.readiness())[0]

    await app.on_partitions_revoked.send(set())  # a rebalance that never completes
    now[0] += 60
    assert (await checks.liveness())[0]
    now[0] += 61
    assert not (await checks.liveness())[0]
    await app.on_partitions_assigned.send(set())
    assert (await checks.liveness())[0]
