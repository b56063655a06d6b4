"""One future per publish() call: every report fills its slot, the last one settles it once."""

from __future__ import annotations

import asyncio
import threading

from audit_ingest.adapters.kafka import AwaitedRecords
from audit_ingest.ports import Delivery


async def test_reports_before_and_after_the_seal_settle_once() -> None:
    loop = asyncio.get_running_loop()
    awaited = AwaitedRecords(loop.create_future(), 3)
    awaited.on_delivery(0, None, None)  # type: ignore[arg-type]
    awaited.seal(3)  # record 2 is still in flight
    assert not awaited.future.done()
    awaited.on_delivery(2, None, None)  # type: ignore[arg-type]
    assert not awaited.future.done()
    awaited.on_delivery(1, None, None)  # type: ignore[arg-type]
    await asyncio.wait_for(awaited.future, 1)
    assert all(result is not None and result.acknowledged for result in awaited.results)


async def test_nothing_produced_settles_at_the_seal() -> None:
    awaited = AwaitedRecords(asyncio.get_running_loop().create_future(), 2)
    awaited.results[0] = awaited.results[1] = Delivery(False, "local producer queue is full")
    awaited.seal(0)
    assert awaited.future.done()


async def test_reports_from_another_thread_settle_on_the_loop() -> None:
    count = 500
    awaited = AwaitedRecords(asyncio.get_running_loop().create_future(), count)

    def deliver() -> None:
        for index in range(count):
            awaited.on_delivery(index, None, None)  # type: ignore[arg-type]

    thread = threading.Thread(target=deliver)
    thread.start()
    awaited.seal(count)
    await asyncio.wait_for(awaited.future, 5)
    thread.join()
    assert sum(result is not None for result in awaited.results) == count
