"""librdkafka's log lines go through `KafkaLog` into the JSON log, transient ones at INFO."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import Producer

from audit_ingest.adapters.kafka import KafkaPublisher
from audit_ingest.logs import KafkaLog, librdkafka_record

pytestmark = pytest.mark.unit

LOGGER = "audit_ingest.librdkafka"
# What librdkafka 2.x writes on the first request to a fresh broker (idempotent producer).
GETPID_LOADING = (
    "[thrd:main]: Failed to acquire transactional PID from broker TxnCoordinator/1: "
    "Broker: Coordinator load in progress: retrying"
)


@pytest.mark.parametrize(
    ("level", "facility", "text", "expected"),
    [
        (logging.WARNING, "GETPID", GETPID_LOADING, logging.INFO),
        (
            logging.WARNING,
            "GETPID",
            "[thrd:main]: Failed to acquire PID: Broker: Coordinator not available: retrying",
            logging.INFO,
        ),
        # Already below INFO: never raised by the downgrade.
        (logging.DEBUG, "GETPID", GETPID_LOADING, logging.DEBUG),
        # The same words under another facility, and other GETPID failures, keep their level.
        (logging.WARNING, "REQTMOUT", "Coordinator load in progress", logging.WARNING),
        (logging.ERROR, "GETPID", "[thrd:main]: Fatal idempotence error", logging.ERROR),
        (logging.CRITICAL, "FAIL", "[thrd:x]: anything", logging.CRITICAL),
        (logging.INFO, "CONFWARN", "[thrd:app]: a notice", logging.INFO),
    ],
)
def test_levels(level: int, facility: str, text: str, expected: int) -> None:
    assert librdkafka_record(level, facility, text)[0] == expected


def test_a_transient_line_gets_a_plain_message() -> None:
    level, message = librdkafka_record(logging.WARNING, "GETPID", GETPID_LOADING)
    assert level == logging.INFO
    assert message.startswith("waiting for a producer id: the broker is still loading")
    assert "%" not in message and "thrd" not in message


def test_other_lines_lose_only_the_thread_prefix() -> None:
    text = "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect failed: refused"
    assert librdkafka_record(logging.ERROR, "FAIL", text) == (
        logging.ERROR,
        "127.0.0.1:9/bootstrap: Connect failed: refused",
    )


def test_kafka_log_takes_confluent_kafkas_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    KafkaLog().log(logging.WARNING, "%s [%s] %s", "GETPID", "rdkafka#producer-1", GETPID_LOADING)
    [record] = caplog.records
    assert record.name == LOGGER
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("waiting for a producer id")
    assert record.__dict__["kafka_facility"] == "GETPID"
    assert record.__dict__["kafka_client"] == "rdkafka#producer-1"
    assert record.__dict__["kafka_detail"] == GETPID_LOADING


def test_kafka_log_respects_the_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    KafkaLog().log(logging.WARNING, "%s [%s] %s", "GETPID", "rdkafka#producer-1", GETPID_LOADING)
    assert caplog.records == []  # lowered to INFO, below the logger's WARNING


def _served(producer: Producer, caplog: pytest.LogCaptureFixture, facility: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        producer.poll(0.05)  # confluent-kafka hands log lines over in poll()
        if any(r.__dict__.get("kafka_facility") == facility for r in caplog.records):
            return
    pytest.fail(f"no {facility} line reached the logger: {caplog.records}")


def _level_of(caplog: pytest.LogCaptureFixture, words: str) -> int:
    [level] = [r.levelno for r in caplog.records if words in r.getMessage()]
    return level


def test_a_real_producer_maps_syslog_levels(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """No broker is contacted (no `bootstrap.servers`): librdkafka still logs at creation.

    A consumer-only property on a producer is a syslog-4 warning, the missing
    `bootstrap.servers` a syslog-5 notice, and a `debug` line syslog 7; none of them is
    written raw on stderr.
    """
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    producer = Producer({"auto.offset.reset": "earliest", "debug": "generic", "logger": KafkaLog()})
    _served(producer, caplog, "CONFWARN")
    assert _level_of(caplog, "is a consumer property") == logging.WARNING
    assert _level_of(caplog, "No `bootstrap.servers` configured") == logging.INFO
    assert _level_of(caplog, "initialized") == logging.DEBUG
    producer.flush(0)
    assert "CONFWARN" not in capfd.readouterr().err


def test_the_publisher_gives_its_producer_the_logger(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    publisher = KafkaPublisher({"auto.offset.reset": "earliest"}, poll_interval=0.01)
    try:
        publisher.publish_nowait([])  # builds the producer and the poll thread serving logs
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(caplog.records) < 2:
            time.sleep(0.05)
    finally:
        publisher.close(0)
    assert _level_of(caplog, "is a consumer property") == logging.WARNING
    assert "CONFWARN" not in capfd.readouterr().err
