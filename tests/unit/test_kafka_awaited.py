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


class _Late:
    def __init__(self) -> None:
        self.calls: list[dict[int, Delivery]] = []

    def __call__(self, final: dict[int, Delivery]) -> None:
        self.calls.append(final)


async def test_records_without_a_report_at_the_deadline_are_pending_then_reported_late() -> None:
    late = _Late()
    awaited = AwaitedRecords(asyncio.get_running_loop().create_future(), 3, late=late)
    awaited.on_delivery(1, None, None)  # type: ignore[arg-type]
    awaited.seal(3)
    awaited.expire()  # the request's deadline: records 0 and 2 have no report yet
    assert awaited.future.done() and awaited.pending == (0, 2)
    awaited.on_delivery(2, None, None)  # type: ignore[arg-type]
    assert late.calls == []  # record 0 is still out
    awaited.on_delivery(0, _TimedOut(), None)  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the last report completes the call on the loop
    assert len(late.calls) == 1
    final = late.calls[0]
    assert sorted(final) == [0, 2]  # only the records that were pending, each once
    assert final[2].acknowledged and not final[0].acknowledged and final[0].retriable
    awaited.complete()  # a second completion reports nothing again
    assert len(late.calls) == 1


async def test_a_call_completed_before_its_deadline_is_never_late() -> None:
    late = _Late()
    awaited = AwaitedRecords(asyncio.get_running_loop().create_future(), 2, late=late)
    awaited.seal(2)
    awaited.on_delivery(0, None, None)  # type: ignore[arg-type]
    awaited.on_delivery(1, None, None)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    awaited.expire()  # the deadline timer firing after completion changes nothing
    assert awaited.future.done() and awaited.pending == ()
    assert late.calls == []


async def test_every_report_in_before_the_deadline_ran_leaves_nothing_pending() -> None:
    # The last report was queued for the loop, but the deadline ran first: every slot is
    # filled, so nothing is pending and nothing is reported late.
    late = _Late()
    awaited = AwaitedRecords(
        asyncio.get_running_loop().create_future(), 1, wake=lambda _: None, late=late
    )
    awaited.seal(1)
    awaited.on_delivery(0, None, None)  # type: ignore[arg-type]
    awaited.expire()
    awaited.complete()
    assert awaited.pending == () and late.calls == []


async def test_late_reports_from_the_poll_thread_reach_the_loop() -> None:
    count = 300
    late = _Late()
    awaited = AwaitedRecords(asyncio.get_running_loop().create_future(), count, late=late)
    awaited.seal(count)
    awaited.expire()
    assert len(awaited.pending) == count

    def deliver() -> None:
        for index in range(count):
            awaited.on_delivery(index, None, None)  # type: ignore[arg-type]

    thread = threading.Thread(target=deliver)
    thread.start()
    thread.join()
    for _ in range(100):
        if late.calls:
            break
        await asyncio.sleep(0.01)
    assert len(late.calls) == 1 and len(late.calls[0]) == count
    assert all(delivery.acknowledged for delivery in late.calls[0].values())


class _TimedOut:
    """A stand-in for a librdkafka KafkaError: local message timeout (retriable)."""

    def code(self) -> int:
        return -192  # KafkaError._MSG_TIMED_OUT

    def __str__(self) -> str:
        return "KafkaError{code=_MSG_TIMED_OUT}"
