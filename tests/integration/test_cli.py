"""`audit-ingest` as an operator runs it: a real process against the real stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from audit_ingest.adapters.kafka_reader import read_records
from audit_ingest.domain.keys import hash_key, is_well_formed
from audit_ingest.domain.timestamps import format_rfc3339_ms
from audit_ingest.settings import Settings

pytestmark = pytest.mark.integration


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("audit-ingest", path=str(Path(sys.executable).parent))
    assert executable
    return subprocess.run(
        [executable, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def test_keys_create_list_revoke(
    stack_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    tenant = str(uuid.uuid4())
    created = cli(
        stack_env,
        "keys",
        "create",
        "--tenant",
        tenant,
        "--name",
        "crm",
        "--rate-limit",
        "5",
        "--scopes",
        "events:write,events:read",
        "--expires-at",
        "2099-01-01T00:00:00Z",
        "--json",
    )
    document = orjson.loads(created.stdout)
    assert document["tenant_id"] == tenant and document["rate_limit"] == 5
    assert document["scopes"] == ["events:write", "events:read"]
    assert is_well_formed(document["key"])

    listed = cli(stack_env, "keys", "list", "--tenant", tenant, "--json")
    (row,) = orjson.loads(listed.stdout)  # one JSON array
    assert row["id"] == document["id"] and row["is_active"] is True
    assert row["status"] == "active" and row["expires_at"].startswith("2099-01-01T00:00:00")
    assert document["key"] not in listed.stdout and hash_key(document["key"]) not in listed.stdout

    assert "revoked" in cli(stack_env, "keys", "revoke", document["id"]).stdout
    listed = cli(stack_env, "keys", "list", "--tenant", tenant, "--json")
    (row,) = orjson.loads(listed.stdout)
    assert row["is_active"] is False and row["status"] == "revoked"
    empty = cli(stack_env, "keys", "list", "--tenant", str(uuid.uuid4()), "--json")
    assert orjson.loads(empty.stdout) == []
    missing = cli(stack_env, "keys", "revoke", str(uuid.uuid4()), check=False)
    assert missing.returncode != 0 and "no key" in missing.stderr


def test_keys_list_tells_active_expired_and_revoked_apart(stack_env: dict[str, str]) -> None:
    tenant = str(uuid.uuid4())

    def create(*options: str) -> str:
        out = cli(stack_env, "keys", "create", "--tenant", tenant, "--json", *options).stdout
        key_id = orjson.loads(out)["id"]
        assert isinstance(key_id, str)
        return key_id

    rotated, revoked = create("--name", "rotated"), create("--name", "revoked")
    expiring = create("--name", "expiring", "--expires-at", "2099-01-01T00:00:00Z")
    successor = orjson.loads(
        cli(stack_env, "keys", "rotate", rotated, "--grace", "0", "--json").stdout
    )["id"]
    cli(stack_env, "keys", "revoke", revoked)

    listed = orjson.loads(cli(stack_env, "keys", "list", "--tenant", tenant, "--json").stdout)
    by_id = {row["id"]: row for row in listed}
    assert {key: row["status"] for key, row in by_id.items()} == {
        rotated: "expired",
        revoked: "revoked",
        expiring: "active",
        successor: "active",
    }
    assert by_id[rotated]["is_active"] is True  # not revoked: its expiry has passed
    assert by_id[rotated]["expires_at"] is not None

    text = cli(stack_env, "keys", "list", "--tenant", tenant).stdout.splitlines()
    assert text[0].split() == [
        "ID",
        "TENANT",
        "STATUS",
        "EXPIRES_AT",
        "LIMIT/MIN",
        "LAST_USED_AT",
        "NAME",
    ]
    rows = {line.split()[0]: line.split() for line in text[1:]}
    expired_at = datetime.fromisoformat(by_id[rotated]["expires_at"])
    assert rows[rotated][2:4] == ["expired", format_rfc3339_ms(expired_at)]
    assert rows[revoked][2:4] == ["revoked", "-"]
    assert rows[expiring][2:4] == ["active", "2099-01-01T00:00:00.000Z"]
    assert rows[successor][2:4] == ["active", "-"] and rows[successor][-1] == "rotated"
    none = cli(stack_env, "keys", "list", "--tenant", str(uuid.uuid4())).stdout
    assert none.strip().startswith("no keys")


def test_plain_output_shows_the_key_once_and_warns(stack_env: dict[str, str]) -> None:
    created = cli(stack_env, "keys", "create", "--tenant", str(uuid.uuid4()))
    assert "aik_" in created.stdout and "not shown again" in created.stderr


def test_bad_arguments_are_clear(stack_env: dict[str, str]) -> None:
    bad = cli(stack_env, "keys", "create", "--tenant", "nope", check=False)
    assert bad.returncode == 2 and "UUID" in bad.stderr
    bad = cli(
        stack_env,
        "keys",
        "create",
        "--tenant",
        str(uuid.uuid4()),
        "--expires-at",
        "tomorrow",
        check=False,
    )
    assert bad.returncode == 2 and "RFC 3339" in bad.stderr


def test_migrate_and_topics_are_idempotent(stack_env: dict[str, str]) -> None:
    assert "up to date" in cli(stack_env, "migrate").stdout
    topics = cli(stack_env, "topics", "create", "--partitions", "3").stdout
    assert "audit.events.v1: exists" in topics and "audit.events.dlq.v1: exists" in topics


def test_env_file_is_read(stack_env: dict[str, str], tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in stack_env.items()))
    clean = {k: v for k, v in os.environ.items() if k not in stack_env}
    result = subprocess.run(
        [
            shutil.which("audit-ingest", path=str(Path(sys.executable).parent)) or "",
            "--env-file",
            str(env_file),
            "migrate",
        ],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "up to date" in result.stdout


async def test_events_tail_prints_stored_records(
    stack_env: dict[str, str], settings: Settings
) -> None:
    from audit_ingest.adapters.kafka import KafkaPublisher
    from audit_ingest.bootstrap import producer_config
    from audit_ingest.domain.records import KafkaRecord

    marker = str(uuid.uuid4())
    publisher = KafkaPublisher(producer_config(settings))
    try:
        (delivery,) = await publisher.publish(
            [
                KafkaRecord(
                    settings.kafka_dlq_topic,
                    b"tail-test",
                    marker.encode(),
                    (("dlq_reason", b"validation_failed"),),
                )
            ],
            timeout=10,
        )
    finally:
        publisher.close(5)
    assert delivery.acknowledged
    out = cli(
        stack_env, "events", "tail", "--dlq", "--from-beginning", "--max", "100000", "--idle", "3"
    ).stdout
    assert marker in out and "validation_failed" in out


def produce_at(settings: Settings, topic: str, records: list[tuple[int, int, str]]) -> None:
    """(partition, timestamp ms, value) each, in the order given."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for partition, stamp, value in records:
        producer.produce(topic, value=value.encode(), partition=partition, timestamp=stamp)
    assert producer.flush(10) == 0


def new_topic(settings: Settings, partitions: int) -> str:
    name = f"tail-test-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=30)
    return name


def tailed_values(out: str) -> list[str]:
    return [line for line in out.splitlines() if not line.startswith("#")]


def test_events_tail_from_beginning_gives_the_oldest_records_across_partitions(
    stack_env: dict[str, str], settings: Settings
) -> None:
    topic = new_topic(settings, 3)
    base = int(time.time() * 1000) - 60_000
    # The oldest record is in the last partition; timestamps interleave across partitions.
    produce_at(
        settings,
        topic,
        [
            (0, base + 3, "t3"),
            (0, base + 6, "t6"),
            (1, base + 2, "t2"),
            (1, base + 5, "t5"),
            (2, base + 1, "t1"),
            (2, base + 4, "t4"),
        ],
    )
    env = {**stack_env, "KAFKA_TOPIC": topic}

    def tail(limit: int) -> str:
        args = ("events", "tail", "--from-beginning", "--max", str(limit), "--idle", "5")
        return cli(env, *args).stdout

    (oldest,) = tailed_values(tail(1))
    assert oldest == "t1"
    out = tail(6)
    assert tailed_values(out) == ["t1", "t2", "t3", "t4", "t5", "t6"]
    first = next(line for line in out.splitlines() if line.startswith("# "))
    assert first.startswith(f"# {topic}[2]@0 time=") and first.endswith("key=None")
    assert tailed_values(tail(4)) == ["t1", "t2", "t3", "t4"]


def test_events_tail_from_beginning_then_follows_new_records(settings: Settings) -> None:
    topic = new_topic(settings, 2)
    base = int(time.time() * 1000) - 60_000
    produce_at(settings, topic, [(1, base + 1, "old-1"), (0, base + 2, "old-2")])
    records = read_records(
        settings.kafka_connection(), topic, from_beginning=True, limit=3, idle_seconds=10
    )
    try:
        assert [next(records).value, next(records).value] == [b"old-1", b"old-2"]
        produce_at(settings, topic, [(0, base, "new")])  # older stamp, but stored later
        assert next(records).value == b"new"
        assert next(records, None) is None  # --max reached
    finally:
        records.close()


def test_events_tail_help_describes_every_option(stack_env: dict[str, str]) -> None:
    out = cli(stack_env, "events", "tail", "--help").stdout
    assert "--max INTEGER RANGE Print at most this many records" in " ".join(out.split())
    assert "oldest first by record timestamp" in " ".join(out.split())


def test_topics_create_gives_each_topic_its_retention(stack_env: dict[str, str]) -> None:
    suffix = uuid.uuid4().hex[:8]
    env = {
        **stack_env,
        "KAFKA_TOPIC": f"ret-events-{suffix}",
        "KAFKA_DLQ_TOPIC": f"ret-dlq-{suffix}",
    }
    cli(env, "topics", "create", "--partitions", "1", "--dlq-retention-ms", "86400000")
    admin = AdminClient({"bootstrap.servers": stack_env["KAFKA_BOOTSTRAP_SERVERS"]})
    resources = [
        ConfigResource(ConfigResource.Type.TOPIC, env["KAFKA_TOPIC"]),
        ConfigResource(ConfigResource.Type.TOPIC, env["KAFKA_DLQ_TOPIC"]),
    ]
    found = {
        resource.name: future.result(10)["retention.ms"].value
        for resource, future in admin.describe_configs(resources).items()
    }
    assert found == {env["KAFKA_TOPIC"]: "604800000", env["KAFKA_DLQ_TOPIC"]: "86400000"}
