"""The producer settings that make a 202 durable (seed E2.S7) and keep latency low."""

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
    # The broker must answer before the request gives up on it.
    assert config["message.timeout.ms"] == Settings().kafka_delivery_timeout_ms


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
