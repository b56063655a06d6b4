"""A producer slot: one producer, built on first use, replaced after a fatal error."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest

from audit_ingest.adapters.kafka import STARTUP_GRACE_SECONDS, KafkaPublisher, ProducerSlot
from audit_ingest.domain.records import KafkaRecord


class FakeProducer:
    """Stands in for confluent_kafka.Producer: counts what the slot and publisher ask of it."""

    built = 0

    def __init__(self, config: dict[str, Any]) -> None:
        FakeProducer.built += 1
        self.config = config
        self.purged = False
        self.flushed: float | None = None
        self.held = 3

    def __len__(self) -> int:
        return self.held

    def purge(self, **_: bool) -> None:
        self.purged = True

    def poll(self, timeout: float) -> int:
        time.sleep(min(timeout, 0.01))  # as librdkafka's, it waits: the poll thread must not spin
        return 0

    def flush(self, timeout: float) -> int:
        self.flushed = timeout
        return 0


class Error:
    def __init__(self, fatal: bool) -> None:
        self._fatal = fatal

    def fatal(self) -> bool:
        return self._fatal

    def __str__(self) -> str:
        return "fatal" if self._fatal else "transient"


def slot() -> tuple[ProducerSlot, list[FakeProducer], list[int]]:
    retired: list[FakeProducer] = []
    started: list[int] = []
    made = ProducerSlot(
        {"bootstrap.servers": "x"},
        label="producer",
        retire=retired.append,  # type: ignore[arg-type]
        started=lambda: started.append(1),
        factory=FakeProducer,  # type: ignore[arg-type]
    )
    return made, retired, started


def test_one_producer_is_built_on_first_use_and_reused() -> None:
    made, retired, started = slot()
    assert made.current is None
    first = made.get()
    assert made.get() is first and made.current is first
    assert started == [1] and retired == []
    # Its errors and librdkafka's log lines come back to the slot's handlers.
    config = first.config
    assert callable(config["error_cb"]) and "logger" in config


def test_a_transient_error_keeps_the_producer_a_fatal_one_replaces_it(caplog: Any) -> None:
    made, retired, started = slot()
    first = made.get()
    error_cb = first.config["error_cb"]  # type: ignore[attr-defined]
    error_cb(Error(fatal=False))
    assert made.get() is first
    error_cb(Error(fatal=True))
    second = made.get()
    assert second is not first and retired == [cast(FakeProducer, first)]
    assert started == [1, 1]  # the new producer is served too
    assert "3 record(s) it held are lost" in caplog.text
    assert made.get() is second  # the fatal flag belonged to the old one


def test_take_hands_the_producer_over_once() -> None:
    made, _, _ = slot()
    assert made.take() is None
    first = made.get()
    assert made.take() is first and made.current is None and made.take() is None


def test_the_publisher_fails_a_fatal_producers_pending_reports_and_flushes_both_on_close() -> None:
    publisher = KafkaPublisher(
        {"bootstrap.servers": "x"},
        dead_letter_config={"bootstrap.servers": "x", "message.timeout.ms": 0},
        factory=FakeProducer,  # type: ignore[arg-type]
    )
    try:
        main = publisher._main.get()
        main.config["error_cb"](Error(fatal=True))  # type: ignore[attr-defined]
        replacement = publisher._main.get()
        assert replacement is not main and main.purged  # type: ignore[attr-defined]
        publisher.publish_nowait([])
        dead_letters = publisher._dead_letters.current  # type: ignore[union-attr]
        assert (
            isinstance(dead_letters, FakeProducer)
            and dead_letters.config["message.timeout.ms"] == 0
        )
    finally:
        assert publisher.close(2.0) == 0
    assert replacement.flushed == 2.0  # type: ignore[attr-defined]
    assert dead_letters.flushed is not None


def test_a_new_producer_settles_for_the_start_up_grace() -> None:
    now = [100.0]
    made = ProducerSlot(
        {"bootstrap.servers": "x"},
        label="producer",
        retire=lambda _producer: None,
        started=lambda: None,
        factory=FakeProducer,  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    made.get()
    assert made.settling() == pytest.approx(STARTUP_GRACE_SECONDS)
    now[0] += STARTUP_GRACE_SECONDS / 2
    assert made.settling() == pytest.approx(STARTUP_GRACE_SECONDS / 2)
    now[0] += STARTUP_GRACE_SECONDS
    assert made.settling() == 0.0
    made.get()  # the same producer: no new grace
    assert made.settling() == 0.0


class DeliveringProducer(FakeProducer):
    """Acknowledges each record at the next poll, and notes when each was produced."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.built_at = time.monotonic()
        self.produced_at: list[float] = []
        self.reports: list[Any] = []

    def produce(self, topic: str, **record: Any) -> None:
        self.produced_at.append(time.monotonic())
        self.reports.append(record["on_delivery"])

    def poll(self, timeout: float) -> int:
        reports, self.reports = self.reports, []
        for report in reports:
            report(None, None)
        return super().poll(timeout) + len(reports)


def test_the_first_publish_waits_out_the_grace_and_later_ones_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:  # the publisher's clock moves as it sleeps
        slept.append(seconds)
        now[0] += seconds
        await real_sleep(0)

    monkeypatch.setattr("audit_ingest.adapters.kafka.asyncio.sleep", sleep)
    publisher = KafkaPublisher(
        {"bootstrap.servers": "x"},
        factory=DeliveringProducer,  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    record = KafkaRecord("t", b"k", b"v", ())
    try:
        publisher.start()  # as `build_publisher` does
        producer = publisher._main.current
        assert isinstance(producer, DeliveringProducer) and producer.produced_at == []
        now[0] += STARTUP_GRACE_SECONDS / 4  # the first request's auth and validation

        async def twice() -> None:
            for expected_sleeps in (1, 1):
                deliveries = await publisher.publish([record], timeout=2.0)
                assert [d.acknowledged for d in deliveries] == [True]
                assert len(slept) == expected_sleeps

        asyncio.run(twice())
        assert slept == [pytest.approx(STARTUP_GRACE_SECONDS * 3 / 4)]
        assert len(producer.produced_at) == 2
    finally:
        publisher.close(1.0)
