"""The Kafka publisher: confluent-kafka's `Producer`, its delivery reports bridged to asyncio.

`confluent_kafka.aio.AIOProducer` refuses message headers, and the CloudEvents Kafka binding
needs them, so this adapter drives the synchronous `Producer`: `produce()` from the event loop
(it only enqueues), a daemon thread serving `poll()`, and the delivery reports of one
`publish()` call filling one slot each and, with the last, settling one asyncio future through
`call_soon_threadsafe` (one future per request, not per record: a batch of 1000 used to cost
1000 futures, 1000 thread-safe calls and an `asyncio.wait` over 1000 futures). The futures that
one `poll()` settles are woken together, with one thread-safe call (`Wakeups`): under load one
poll serves the reports of many requests, and each thread-safe call is a write to the loop's
self-pipe and a loop wake-up.
A request is answered only once every one of its records has its report (or its deadline
passed), which is what makes a 202 mean "durable". A record whose request gave up is not
withdrawn: librdkafka keeps trying until its own message timeout (`KAFKA_MESSAGE_TIMEOUT_MS`,
longer than a broker failover), and the caller's `on_late` learns how it ended. A message
timeout while a record may be in flight makes the idempotent producer bump its epoch and send
what it still holds again under new sequence numbers, which the broker cannot recognise as
repeats: the extra copies under one 202 that the fault runs found.

Dead letters (`publish_nowait`) go through a producer of their own when one is configured
(`dead_letter_config`): nothing waits for them, so their records may wait for the brokers as
long as the process lives (`KAFKA_DLQ_DELIVERY_TIMEOUT_MS`, default 0: no timeout), bounded by
its queue, while the main producer's records must give up at the request's deadline (a late
write would store an event whose client was told 503).

Lifecycle: each producer lives in a `ProducerSlot`: built on first use, rebuilt after a fatal
error of the idempotent producer (librdkafka cannot recover from those in place), and flushed
by `close()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from audit_ingest.domain.records import KafkaRecord
from audit_ingest.logs import KafkaLog
from audit_ingest.metrics import KAFKA_DELIVERY_SECONDS
from audit_ingest.ports import Delivery, LateDeliveries

log = logging.getLogger(__name__)

# Delivery errors that retrying the same record cannot fix; such records go to the DLQ.
_PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)


def _is_permanent(error: KafkaError) -> bool:
    return error.code() in _PERMANENT


# librdkafka (2.x, measured on 2.16) holds a record that an idempotent producer is given in
# the first few milliseconds of its life until its producer-id timer retries, 500 ms later
# (rdkafka_idempotence.c: no broker was up when it first asked); a record given 3 ms or more
# after the producer was built is acknowledged about 55 ms after the build. The first publish
# of a new producer therefore waits out this grace (a cold start's first request paid the
# 500 ms: 505 against 55 ms from build to acknowledgement, docs/benchmarks.md).
STARTUP_GRACE_SECONDS = 0.02


class ProducerSlot:
    """One librdkafka producer: built on first use, replaced after a fatal error of the
    idempotent producer (librdkafka cannot recover from those in place), taken by `close()`.

    `retire` gets the producer being replaced (what it still holds will never be delivered);
    `started` is called after a producer is built (the publisher starts its poll thread then,
    not on every call). `built_at` is when the current producer was built (`clock`).
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        label: str,
        retire: Callable[[Producer], None],
        started: Callable[[], None],
        factory: Callable[[dict[str, Any]], Producer] = Producer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = dict(config)
        self._config.setdefault("error_cb", self._on_error)
        # librdkafka's own lines into the JSON log (served by the poll thread), not raw stderr.
        self._config.setdefault("logger", KafkaLog())
        self._label = label
        self._retire = retire
        self._started = started
        self._factory = factory
        self._lock = threading.Lock()
        self._fatal = False
        self._clock = clock
        self.current: Producer | None = None  # read without the lock by the poll thread
        self.built_at = 0.0

    def get(self) -> Producer:
        with self._lock:
            if self.current is not None and self._fatal:
                log.error(
                    "kafka %s hit a fatal error; replacing it (%d record(s) it held are lost)",
                    self._label,
                    len(self.current),
                )
                self._retire(self.current)
                self.current = None
            if self.current is None:
                self._fatal = False
                self.current = self._factory(self._config)
                self.built_at = self._clock()
                self._started()
            return self.current

    def settling(self) -> float:
        """Seconds the current producer still needs before its first record
        (`STARTUP_GRACE_SECONDS` from its build; 0 once past it)."""
        return max(0.0, self.built_at + STARTUP_GRACE_SECONDS - self._clock())

    def take(self) -> Producer | None:
        """The producer (None if never built), no longer the slot's: the caller flushes it."""
        with self._lock:
            producer, self.current = self.current, None
        return producer

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = True
            log.error("kafka fatal error (%s): %s", self._label, error)
        else:
            log.warning("kafka error (%s): %s", self._label, error)


class KafkaPublisher:
    """Publishes records with acks=all and idempotence, awaiting each delivery report."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        dead_letter_config: dict[str, Any] | None = None,
        poll_interval: float = 0.05,
        factory: Callable[[dict[str, Any]], Producer] = Producer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._main = ProducerSlot(
            config,
            label="producer",
            retire=self._fail_pending,
            started=self._ensure_poller,
            factory=factory,
            clock=clock,
        )
        self._dead_letters = (
            ProducerSlot(
                dead_letter_config,
                label="dead-letter producer",
                retire=_drop_held,
                started=self._ensure_poller,  # it serves the dead letters' failure reports
                factory=factory,
            )
            if dead_letter_config
            else None
        )
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._wakeups = Wakeups()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Build the producer now: librdkafka connects and asks for its producer id in the
        background while the caller goes on (a first request authenticates meanwhile)."""
        try:
            self._main.get()
        except KafkaException as exc:  # the first publish reports it, as it reports any
            log.warning("kafka producer not built yet: %s", exc)

    def _ensure_poller(self) -> None:
        with self._lock:
            if self._poller is None or not self._poller.is_alive():
                self._stop.clear()
                self._poller = threading.Thread(
                    target=self._poll_forever, name="kafka-delivery-reports", daemon=True
                )
                self._poller.start()

    def _fail_pending(self, producer: Producer) -> None:
        # A fatal producer delivers nothing more; fail its pending reports now so the waiting
        # requests answer 503 at once instead of at their deadline.
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.poll(0)
        self._wakeups.flush()

    def _poll_forever(self) -> None:
        while not self._stop.is_set():
            producer = self._main.current
            try:
                if producer is None:
                    self._stop.wait(self._poll_interval)
                else:
                    producer.poll(self._poll_interval)
                dead_letters = self._dead_letters.current if self._dead_letters else None
                if dead_letters is not None:
                    dead_letters.poll(0)
            finally:
                self._wakeups.flush()

    def close(self, timeout: float) -> int:
        """Flush what is queued (up to `timeout` seconds) and stop; returns records left."""
        deadline = time.monotonic() + timeout
        remaining = 0
        producer = self._main.take()
        if producer is not None:
            remaining = producer.flush(timeout)
            self._wakeups.flush()
            if remaining:
                log.error("kafka flush left %d record(s) undelivered", remaining)
        dead_letters = self._dead_letters.take() if self._dead_letters else None
        if dead_letters is not None:
            left = dead_letters.flush(max(0.0, deadline - time.monotonic()))
            if left:
                log.error("kafka flush left %d dead-letter record(s) undelivered", left)
            remaining += left
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=1.0)
        return remaining

    # -- publishing ------------------------------------------------------------------------
    async def publish(
        self,
        records: Sequence[KafkaRecord],
        timeout: float,
        on_late: LateDeliveries | None = None,
    ) -> list[Delivery]:
        if not records:
            return []
        loop = asyncio.get_running_loop()
        try:
            producer = self._main.get()
        except KafkaException as exc:
            failure = Delivery(False, f"producer unavailable: {exc}")
            return [failure for _ in records]
        settling = self._main.settling()
        if settling:  # a producer built moments ago (STARTUP_GRACE_SECONDS)
            await asyncio.sleep(settling)
        awaited = AwaitedRecords(loop.create_future(), len(records), self._wakeups.add, on_late)
        produced = 0
        for index, record in enumerate(records):
            try:
                producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    on_delivery=functools.partial(awaited.on_delivery, index),
                )
                produced += 1
            except BufferError:
                awaited.results[index] = Delivery(False, "local producer queue is full")
            except KafkaException as exc:
                error = exc.args[0]
                permanent = isinstance(error, KafkaError) and _is_permanent(error)
                awaited.results[index] = Delivery(False, str(exc), retriable=not permanent)
        awaited.seal(produced)
        started = time.perf_counter()
        if not awaited.future.done():
            # The deadline settles the same future (cheaper than `asyncio.wait`, which adds a
            # waiter future and callbacks to every request).
            deadline = loop.call_later(timeout, awaited.expire)
            try:
                await awaited.future
            finally:
                deadline.cancel()
        results = list(awaited.results)
        if not awaited.pending:
            KAFKA_DELIVERY_SECONDS.observe(time.perf_counter() - started)
            return results  # type: ignore[return-value]  # every record has its report
        late = Delivery(False, f"not acknowledged within {timeout:.1f} s", pending=True)
        for index in awaited.pending:
            results[index] = late
        return results  # type: ignore[return-value]  # the pending ones were filled in

    def publish_nowait(self, records: Sequence[KafkaRecord]) -> None:
        try:
            if self._dead_letters is not None:
                producer = self._dead_letters.get()
            else:
                producer = self._main.get()
            for record in records:
                producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    on_delivery=_log_failure,
                )
        except (BufferError, KafkaException) as exc:
            log.warning("dead-letter record not queued: %s", exc)

    async def ping(self, timeout: float) -> bool:
        def probe() -> bool:
            producer = self._main.get()
            metadata = producer.list_topics(timeout=timeout)
            return bool(metadata.brokers)

        try:
            return await asyncio.to_thread(probe)
        except KafkaException:
            return False


_ACKNOWLEDGED = Delivery(True)


class AwaitedRecords:
    """The delivery reports of one `publish()` call: one slot per record, one future for all.

    Reports arrive on the poll thread. Each takes a ticket (`next()` on a counter is atomic),
    as does the loop once it has produced every record; whoever takes the last ticket
    completes the call, once, without a lock: on the loop, at once; on the poll thread,
    through `wake` (by default a thread-safe call per call; the publisher passes
    `Wakeups.add`). The request's deadline (`expire`, on the loop) may come first: the records
    still without a report are then `pending`, and once their reports are in, `late` learns
    how they ended.
    """

    __slots__ = ("_last", "_tickets", "_wake", "future", "late", "pending", "results")

    def __init__(
        self,
        future: asyncio.Future[None],
        count: int,
        wake: Callable[[AwaitedRecords], None] | None = None,
        late: LateDeliveries | None = None,
    ) -> None:
        self.future = future
        self.results: list[Delivery | None] = [None] * count
        self.late = late
        # Indices of the records without a report when the deadline came (set by `expire`).
        self.pending: tuple[int, ...] = ()
        self._tickets = itertools.count(1)
        self._last = 0  # set by seal(): records produced + 1 (the loop's own ticket)
        self._wake = wake or _wake_now

    def on_delivery(self, index: int, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.results[index] = _ACKNOWLEDGED
        else:
            self.results[index] = Delivery(False, str(error), retriable=not _is_permanent(error))
        if next(self._tickets) == self._last:
            self._wake(self)

    def seal(self, produced: int) -> None:
        """Called on the loop once `produced` records are queued (the others failed at once)."""
        self._last = produced + 1
        if next(self._tickets) == self._last:
            self.complete()

    def expire(self) -> None:  # on the loop, at the request's deadline
        if not self.future.done():
            self.pending = tuple(i for i, result in enumerate(self.results) if result is None)
            self.future.set_result(None)

    def complete(self) -> None:  # on the loop, once every record has its report
        if not self.future.done():
            self.future.set_result(None)
        elif self.pending and self.late is not None:
            late, self.late = self.late, None
            final = {index: self.results[index] for index in self.pending}
            late(final)  # type: ignore[arg-type]  # every report is in: no None left


class Wakeups:
    """Calls whose last report arrived, completed together after the `poll()` that served them.

    `add` runs inside `poll()` (the poll thread, or the loop's own `poll(0)` when a producer is
    retired); `flush` after it: one `call_soon_threadsafe` per event loop for all of them.
    A deque: its append and popleft are atomic, so a report served on another thread during a
    flush is woken by this flush or the next, never lost.
    """

    __slots__ = ("_due",)

    def __init__(self) -> None:
        self._due: collections.deque[AwaitedRecords] = collections.deque()

    def add(self, awaited: AwaitedRecords) -> None:
        self._due.append(awaited)

    def flush(self) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[AwaitedRecords]] = {}
        while True:
            try:
                awaited = self._due.popleft()
            except IndexError:
                break
            by_loop.setdefault(awaited.future.get_loop(), []).append(awaited)
        for loop, calls in by_loop.items():
            # A closed loop means the requests are gone already: nothing is waiting for them.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_complete_all, calls)


def _wake_now(awaited: AwaitedRecords) -> None:
    with contextlib.suppress(RuntimeError):
        awaited.future.get_loop().call_soon_threadsafe(awaited.complete)


def _complete_all(calls: list[AwaitedRecords]) -> None:  # on their loop
    for awaited in calls:
        try:
            awaited.complete()
        except Exception:  # one caller's late handler must not cost the others their wake-up
            log.exception("late delivery handler failed")


def _drop_held(producer: Producer) -> None:
    # Nothing waits for dead letters: what a fatal producer held is gone (the count is logged).
    producer.purge(in_queue=True, in_flight=True, blocking=False)
    producer.poll(0)


def _log_failure(error: KafkaError | None, message: Message) -> None:
    if error is not None:
        log.warning("dead-letter record to %s not delivered: %s", message.topic(), error)
