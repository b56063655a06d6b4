"""Topic creation for the main and dead-letter topics (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def create_topics(
    connection: str | dict[str, Any], specs: list[TopicSpec], timeout: float = 30.0
) -> dict[str, str]:
    """Create each topic unless it exists; returns name -> "created" | "exists".

    :param connection: librdkafka connection settings (brokers, security, SASL), or just the
        bootstrap servers of an unsecured cluster.
    """
    if isinstance(connection, str):
        connection = {"bootstrap.servers": connection}
    admin = AdminClient(connection)
    futures = admin.create_topics(
        [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=spec.config,
            )
            for spec in specs
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    result: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout)
            result[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            else:
                raise
    return result
