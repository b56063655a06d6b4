"""The producer settings that make a 202 durable (seed E2.S7) and keep latency low."""

import pytest
from pydantic import ValidationError

from audit_ingest.bootstrap import dead_letter_producer_config, producer_config
from audit_ingest.settings import Settings


def test_durability_and_compression() -> None:
    config = producer_config(Settings(kafka_bootstrap_servers="b:9092"))
    assert config["bootstrap.servers"] == "b:9092"
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["compression.type"] == "lz4"


def test_batching_is_a_ceiling_not_a_linger() -> None:
    config = producer_config(Settings())
    assert config["batch.size"] == 1_048_576  # the seed's 1 MB, as the most a batch holds
    assert config["linger.ms"] <= 5  # not the seed's 1 s: that would be every request's floor


# Kafka fences a dead or cut-off broker after `broker.session.timeout.ms` (9 s by default) and
# then moves its partitions; the fault runs saw new leaders 8-14 s after a cut.
FAILOVER_MS = 15_000


def test_a_record_outlives_its_request_and_a_failover() -> None:
    settings = Settings()
    config = producer_config(settings)
    # A record timing out in flight makes the idempotent producer bump its epoch and resend
    # what it holds as new records (a second copy under one 202), so the producer keeps a
    # record through a failover and past the request's own wait (delivery timeout + 1 s).
    assert config["message.timeout.ms"] == settings.kafka_message_timeout_ms
    assert config["message.timeout.ms"] > settings.kafka_delivery_timeout_ms + 1000
    assert config["message.timeout.ms"] > FAILOVER_MS
    assert config["request.timeout.ms"] > FAILOVER_MS
    assert config["request.timeout.ms"] <= config["message.timeout.ms"]


def test_a_stalled_connection_is_dropped_and_dialled_again_promptly() -> None:
    """After a network partition heals, the producer must not wait on TCP's retransmission
    backoff (a 30 s partition cost ~20 s more of 503s with librdkafka's defaults)."""
    settings = Settings()
    config = producer_config(settings)
    assert config["socket.timeout.ms"] == settings.kafka_socket_timeout_ms
    # Dropped no later than a request gives up on it (librdkafka's default is 60 s) ...
    assert config["socket.timeout.ms"] <= settings.kafka_delivery_timeout_ms
    # ... and resent before its records time out in flight (an epoch bump, a second copy).
    assert config["socket.timeout.ms"] < config["message.timeout.ms"]
    # A dial whose packets vanish gives up soon, and the next comes within a second.
    assert config["socket.connection.setup.timeout.ms"] <= 5_000
    assert config["reconnect.backoff.max.ms"] <= 1_000


def test_a_socket_timeout_that_outlives_the_records_is_refused() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SOCKET_TIMEOUT_MS"):
        Settings(kafka_socket_timeout_ms=60_000, kafka_message_timeout_ms=60_000)


def test_a_producer_that_gives_up_before_the_request_is_refused() -> None:
    with pytest.raises(ValidationError, match="KAFKA_MESSAGE_TIMEOUT_MS"):
        Settings(kafka_delivery_timeout_ms=20_000, kafka_message_timeout_ms=10_000)


def test_small_requests_are_sent_at_once() -> None:
    # Nagle would hold a small produce request until the previous one is ACKed.
    assert producer_config(Settings())["socket.nagle.disable"] is True


def test_sasl_credentials_are_passed_only_when_configured() -> None:
    assert "sasl.mechanism" not in producer_config(Settings())
    config = producer_config(
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert (config["sasl.username"], config["sasl.password"]) == ("u", "p")
    assert config["security.protocol"] == "SASL_SSL"


def test_dead_letters_wait_for_the_brokers_with_the_same_durability() -> None:
    main = producer_config(Settings())
    dead = dead_letter_producer_config(Settings())
    # 0 is librdkafka's "no timeout": an outage holds them (bounded by the queue) until it ends.
    assert dead["message.timeout.ms"] == 0
    assert dead["client.id"] != main["client.id"]
    unchanged = {k: v for k, v in dead.items() if k not in ("message.timeout.ms", "client.id")}
    assert unchanged == {
        k: v for k, v in main.items() if k not in ("message.timeout.ms", "client.id")
    }
    bounded = dead_letter_producer_config(Settings(kafka_dlq_delivery_timeout_ms=60_000))
    assert bounded["message.timeout.ms"] == 60_000
