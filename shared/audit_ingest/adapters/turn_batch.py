"""Calls made in one event-loop turn, sent as one call per group.

A burst of N idempotency claims or settlements (a broker that comes back and delivers a
backlog at once, or a thousand requests arriving together) would otherwise be N Redis round
trips, each with its own connection, parse and wake-up, on a loop that is already behind: the
calls then time out on the loop, not in Redis, and the store's breaker opens while Redis is
healthy. Here the callers of one turn are queued, and on the next turn each group's items
go out together (groups are tenants: one tenant's keys share a Redis Cluster hash slot, so one
script may touch them all). Every caller gets its own slice of the answer, or the call's
error. A caller that gives up (cancelled) leaves the others untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Waiter(Generic[Item, Result]):
    items: Sequence[Item]
    future: asyncio.Future[list[Result]]


class TurnBatch(Generic[Item, Result]):
    """`submit(group, items)` -> `send(group, all items of the turn)`'s slice for `items`.

    `send` must answer one result per item, in order. A turn's callers of one group are split
    into calls of at most `max_items` items, never splitting one caller's items (a caller with
    more than `max_items` goes alone).
    """

    def __init__(
        self,
        send: Callable[[str, list[Item]], Awaitable[list[Result]]],
        *,
        max_items: int,
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._send = send
        self._max_items = max_items
        self._queued: dict[str, list[_Waiter[Item, Result]]] = {}
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, group: str, items: Sequence[Item]) -> list[Result]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        waiter: _Waiter[Item, Result] = _Waiter(items, loop.create_future())
        self._queued.setdefault(group, []).append(waiter)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await waiter.future

    def _flush(self) -> None:
        queued, self._queued = self._queued, {}
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        for group, waiters in queued.items():
            for chunk in _chunks(waiters, self._max_items):
                task = loop.create_task(self._send_chunk(group, chunk))
                self._sending.add(task)  # held: the loop keeps only weak references to tasks
                task.add_done_callback(self._sending.discard)

    async def _send_chunk(self, group: str, chunk: list[_Waiter[Item, Result]]) -> None:
        items = [item for waiter in chunk for item in waiter.items]
        try:
            results = await self._send(group, items)
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} answers for {len(items)} items")
        except asyncio.CancelledError:
            for waiter in chunk:
                waiter.future.cancel()
            raise
        except Exception as exc:  # handed to every caller of the chunk
            for waiter in chunk:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            return
        start = 0
        for waiter in chunk:
            end = start + len(waiter.items)
            if not waiter.future.done():  # a caller that was cancelled meanwhile
                waiter.future.set_result(results[start:end])
            start = end


def _chunks(
    waiters: list[_Waiter[Item, Result]], max_items: int
) -> list[list[_Waiter[Item, Result]]]:
    chunks: list[list[_Waiter[Item, Result]]] = []
    current: list[_Waiter[Item, Result]] = []
    size = 0
    for waiter in waiters:
        if current and size + len(waiter.items) > max_items:
            chunks.append(current)
            current, size = [], 0
        current.append(waiter)
        size += len(waiter.items)
    if current:
        chunks.append(current)
    return chunks
