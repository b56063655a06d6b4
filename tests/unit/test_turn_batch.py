"""TurnBatch: the calls of one event-loop turn go out as one call per group, each caller gets
its own slice (or the call's error), at the scale of a burst."""

from __future__ import annotations

import asyncio
import random

import pytest

from audit_ingest.adapters.turn_batch import TurnBatch


class Recorder:
    """A `send` that answers each item with (group, item) and remembers every call."""

    def __init__(self, fail_groups: frozenset[str] = frozenset(), pause: float = 0.0) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.fail_groups = fail_groups
        self.pause = pause

    async def send(self, group: str, items: list[int]) -> list[tuple[str, int]]:
        self.calls.append((group, list(items)))
        if self.pause:
            await asyncio.sleep(self.pause)
        if group in self.fail_groups:
            raise ConnectionError(f"{group} is down")
        return [(group, item) for item in items]


async def test_a_burst_of_a_thousand_callers_is_one_call_per_group() -> None:
    recorder = Recorder()
    batch: TurnBatch[int, tuple[str, int]] = TurnBatch(recorder.send, max_items=100_000)
    rng = random.Random(7)
    groups = [f"tenant-{i}" for i in range(8)]
    requests = []
    next_item = 0
    for _ in range(1000):
        size = rng.randint(1, 20)
        requests.append((rng.choice(groups), list(range(next_item, next_item + size))))
        next_item += size
    answers = await asyncio.gather(*(batch.submit(g, items) for g, items in requests))
    # Each caller got exactly its own items back, in order, from its own group's call.
    for (group, items), answer in zip(requests, answers, strict=True):
        assert answer == [(group, item) for item in items]
    assert sorted(g for g, _ in recorder.calls) == sorted(set(g for g, _ in requests))
    sent = sorted(item for _, items in recorder.calls for item in items)
    assert sent == list(range(next_item))  # every item sent once


async def test_calls_are_bounded_and_never_split_a_caller() -> None:
    recorder = Recorder()
    batch: TurnBatch[int, tuple[str, int]] = TurnBatch(recorder.send, max_items=10)
    sizes = [3, 4, 5, 10, 12, 1, 9, 2]
    requests = []
    start = 0
    for size in sizes:
        requests.append(list(range(start, start + size)))
        start += size
    answers = await asyncio.gather(*(batch.submit("t", items) for items in requests))
    assert [[item for _, item in answer] for answer in answers] == requests
    for _, items in recorder.calls:
        # At most 10 items, unless one caller alone brought more (the 12).
        assert len(items) <= 10 or any(items == r for r in requests)
    # No caller's items straddle two calls.
    for request in requests:
        assert any(set(request) <= set(items) for _, items in recorder.calls)
    # Greedy, in arrival order: [3+4] [5] [10] [12] [1+9] [2].
    assert [len(items) for _, items in recorder.calls] == [7, 5, 10, 12, 10, 2]


async def test_callers_in_different_turns_are_different_calls() -> None:
    recorder = Recorder()
    batch: TurnBatch[int, tuple[str, int]] = TurnBatch(recorder.send, max_items=100)
    assert await batch.submit("t", [1]) == [("t", 1)]
    assert await batch.submit("t", [2]) == [("t", 2)]
    assert recorder.calls == [("t", [1]), ("t", [2])]


async def test_an_error_reaches_every_caller_of_its_call_and_no_other() -> None:
    recorder = Recorder(fail_groups=frozenset({"down"}))
    batch: TurnBatch[int, tuple[str, int]] = TurnBatch(recorder.send, max_items=100)
    results = await asyncio.gather(
        batch.submit("down", [1, 2]),
        batch.submit("up", [3]),
        batch.submit("down", [4]),
        return_exceptions=True,
    )
    assert isinstance(results[0], ConnectionError) and isinstance(results[2], ConnectionError)
    assert results[1] == [("up", 3)]


async def test_a_cancelled_caller_leaves_the_others_their_answers() -> None:
    recorder = Recorder(pause=0.05)
    batch: TurnBatch[int, tuple[str, int]] = TurnBatch(recorder.send, max_items=100)
    gone = asyncio.ensure_future(batch.submit("t", [1]))
    stays = asyncio.ensure_future(batch.submit("t", [2, 3]))
    await asyncio.sleep(0.01)  # the call is out
    gone.cancel()
    assert await stays == [("t", 2), ("t", 3)]
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert recorder.calls == [("t", [1, 2, 3])]


async def test_a_wrong_number_of_answers_is_an_error_not_a_misaligned_answer() -> None:
    async def short(_group: str, items: list[int]) -> list[int]:
        return items[:-1]

    batch: TurnBatch[int, int] = TurnBatch(short, max_items=100)
    results = await asyncio.gather(
        batch.submit("t", [1]), batch.submit("t", [2]), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_nothing_to_send_is_no_call() -> None:
    recorder = Recorder()
    batch: TurnBatch[int, tuple[str, int]] = TurnBatch(recorder.send, max_items=1)
    assert await batch.submit("t", []) == []
    assert recorder.calls == []
