"""The commit protocol's rules that need no broker (:mod:`spendwatch.streams.commit_protocol`)."""

from __future__ import annotations

import asyncio

import pytest

from spendwatch.streams.processor import StreamProcessor


class _App:
    def __init__(self) -> None:
        self.crashed: list[BaseException] = []

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


def _processor() -> StreamProcessor:
    processor = StreamProcessor.__new__(StreamProcessor)  # only the send bookkeeping is used here
    processor.app = _App()
    processor.inflight = []
    processor._send_error = None
    return processor


async def test_a_failed_send_of_the_parse_stage_blocks_every_later_commit() -> None:
    processor = _processor()
    loop = asyncio.get_running_loop()
    ok, failed = loop.create_future(), loop.create_future()
    ok.set_result(None)
    failed.set_exception(ConnectionError("broker gone"))
    processor.inflight += [ok, failed]

    with pytest.raises(ConnectionError):
        await processor.await_inflight()
    assert len(processor.app.crashed) == 1  # the worker stops; a restart replays from the last commit
    with pytest.raises(ConnectionError):  # sticky: nothing may be committed past the lost output
        await processor.await_inflight()


async def test_sends_are_awaited_before_the_commit_goes_on() -> None:
    processor = _processor()
    pending = asyncio.get_running_loop().create_future()
    processor.inflight.append(pending)
    waiter = asyncio.ensure_future(processor.await_inflight())
    await asyncio.sleep(0)
    assert not waiter.done()  # still waiting for the broker's acknowledgement
    pending.set_result(None)
    await waiter
    assert processor.inflight == [] and not processor.app.crashed
