"""The Kafka publisher against a real broker: acks, records as stored, failure answers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import cast

import orjson
import pytest
from devstack import LocalStack
from devstack.ports import free_ports

from audit_ingest.adapters.kafka import KafkaPublisher
from audit_ingest.bootstrap import producer_config
from audit_ingest.domain.records import KafkaRecord
from audit_ingest.settings import Settings
from tests.kafka_log import topic_codecs
from tests.stack import TopicReader

pytestmark = pytest.mark.integration


def record(topic: str, tenant: str, marker: str) -> KafkaRecord:
    value = orjson.dumps({"event_id": marker, "tenant_id": tenant})
    return KafkaRecord(
        topic=topic,
        key=tenant.encode(),
        value=value,
        headers=(("ce_id", marker.encode()), ("ce_specversion", b"1.0")),
    )


async def test_publish_waits_for_acks_and_records_arrive(
    settings: Settings, read_topic: Callable[[str], TopicReader]
) -> None:
    publisher = KafkaPublisher(producer_config(settings))
    tenant = str(uuid.uuid4())
    markers = [str(uuid.uuid4()) for _ in range(50)]
    try:
        deliveries = await publisher.publish(
            [record(settings.kafka_topic, tenant, m) for m in markers], timeout=10
        )
    finally:
        assert publisher.close(5) == 0
    assert all(d.acknowledged for d in deliveries)
    reader = read_topic(settings.kafka_topic)
    wanted = set(markers)
    messages = reader.read_until(
        lambda seen: (
            wanted
            <= {
                cast(bytes, dict(m.headers() or [])["ce_id"]).decode()
                for m in seen
                if m.key() == tenant.encode()
            }
        )
    )
    mine = [m for m in messages if m.key() == tenant.encode()]
    # One tenant, one partition, in the order sent.
    assert len({m.partition() for m in mine}) == 1
    assert [orjson.loads(m.value() or b"")["event_id"] for m in mine] == markers


async def test_broker_stores_lz4_batches(settings: Settings, stack: LocalStack) -> None:
    if stack.kafka.external_url is not None:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS names an external broker: its files are not here")
    publisher = KafkaPublisher(producer_config(settings))
    try:
        deliveries = await publisher.publish(
            [record(settings.kafka_topic, "lz4-check", str(i)) for i in range(20)], timeout=10
        )
    finally:
        publisher.close(5)
    assert all(d.acknowledged for d in deliveries)
    codecs = topic_codecs(stack.kafka.nodes[0].data_dir, settings.kafka_topic)
    assert codecs, "no record batch found on disk"
    assert set(codecs) == {"lz4"}


async def test_unreachable_broker_answers_not_acknowledged_within_the_deadline(
    settings: Settings,
) -> None:
    (port,) = free_ports(1)
    config = producer_config(
        settings.model_copy(
            update={
                "kafka_bootstrap_servers": f"127.0.0.1:{port}",
                "kafka_delivery_timeout_ms": 1500,
            }
        )
    )
    publisher = KafkaPublisher(config)
    started = time.monotonic()
    try:
        deliveries = await publisher.publish([record("audit.events.v1", "t", "x")], timeout=3)
    finally:
        publisher.close(0.5)
    assert time.monotonic() - started < 4
    (delivery,) = deliveries
    assert not delivery.acknowledged and delivery.retriable


async def test_ping(settings: Settings) -> None:
    publisher = KafkaPublisher(producer_config(settings))
    try:
        assert await publisher.ping(5)
    finally:
        publisher.close(1)
