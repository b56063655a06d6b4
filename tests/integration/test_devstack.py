"""devstack starts real PostgreSQL, Redis and Kafka servers, and restarts keep their data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # devstack lives at the repo root and is not in the wheel
    sys.path.insert(0, str(REPO))

from devstack import LocalStack, PortInUseError, StackPorts  # noqa: E402
from devstack.provision import DEMO_TENANT, demo_key, stack_settings  # noqa: E402
from devstack.redis_server import RedisService  # noqa: E402

from audit_ingest.adapters.key_admin import revoke_key, rotate_key  # noqa: E402
from audit_ingest.adapters.migrations import migrate  # noqa: E402
from audit_ingest.domain.keys import format_key, hash_key  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STACK_VARS = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
KAFKA_LIBS = REPO / ".dev" / "kafka-libs"  # shared jar cache: fetched once per checkout


@pytest.fixture(scope="module")
def stack_root() -> Iterator[Path]:
    # Not pytest's tmp_path: it is mode 0700 under root, and PostgreSQL (run as an
    # unprivileged user when the tests run as root) must be able to enter the root.
    root = Path(tempfile.mkdtemp(prefix="devstack-it-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(stack_root: Path) -> Iterator[LocalStack]:
    with pytest.MonkeyPatch.context() as mp:
        for var in STACK_VARS:  # start local servers even if the shell points elsewhere
            mp.delenv(var, raising=False)
        local = LocalStack(root=stack_root, ports=StackPorts.free(), kafka_libs=KAFKA_LIBS)
        local.start()
        try:
            yield local
        finally:
            local.stop()


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(topic, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []


def _consume_first(bootstrap: str, topic: str, timeout: float = 60.0) -> bytes:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"devstack-test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            value = msg.value()
            assert isinstance(value, bytes)
            return value
        pytest.fail(f"no message on {topic} within {timeout}s")
    finally:
        consumer.close()


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=30)


def _topics(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return set(admin.list_topics(timeout=10).topics)


def test_env_points_at_local_servers(stack: LocalStack, stack_root: Path) -> None:
    ports = stack.ports
    assert stack.env == {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{ports.postgres}/audit",
        "REDIS_URL": f"redis://127.0.0.1:{ports.redis}/0",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports.kafka}",
    }
    env_file = stack.write_env_file(stack_root / "stack.env")
    shell = subprocess.run(
        [
            "bash",
            "-c",
            'set -a; . "$1"; echo "$DATABASE_URL|$REDIS_URL|$KAFKA_BOOTSTRAP_SERVERS"',
            "_",
            str(env_file),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert shell.stdout.strip() == "|".join(stack.env[var] for var in STACK_VARS)


def test_postgres_answers(stack: LocalStack) -> None:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select current_database()").fetchone() == ("audit",)


def test_redis_ping_set_get(stack: LocalStack) -> None:
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        assert client.ping()
        client.set("devstack:test", "hello")
        assert client.get("devstack:test") == b"hello"
    finally:
        client.close()


def test_kafka_create_produce_consume(stack: LocalStack) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"devstack-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, topic)
    _produce(bootstrap, topic, b"event-1")
    assert _consume_first(bootstrap, topic) == b"event-1"


def test_restart_keeps_data_and_reuses_leftovers(stack: LocalStack, stack_root: Path) -> None:
    env = stack.env
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        conn.execute("create table if not exists kept (id int primary key, note text)")
        conn.execute("insert into kept values (1, 'survives restart') on conflict do nothing")
    client = redis.Redis.from_url(env["REDIS_URL"])
    client.set("devstack:kept", "yes")
    client.close()
    topic = "devstack-kept"
    _create_topic(env["KAFKA_BOOTSTRAP_SERVERS"], topic)
    _produce(env["KAFKA_BOOTSTRAP_SERVERS"], topic, b"kept-event")

    stack.stop()
    assert sorted(stack_root.glob("*.pid")) == []
    assert (stack_root / "postgres" / "PG_VERSION").exists()

    stack.start()
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        assert conn.execute("select note from kept where id = 1").fetchone() == (
            "survives restart",
        )
    client = redis.Redis.from_url(env["REDIS_URL"])
    assert client.get("devstack:kept") == b"yes"
    client.close()
    assert topic in _topics(env["KAFKA_BOOTSTRAP_SERVERS"])
    assert _consume_first(env["KAFKA_BOOTSTRAP_SERVERS"], topic) == b"kept-event"

    # A second stack on the same root (as after a crash of the first owner)
    # reuses the running servers instead of failing on busy ports.
    pids = {p.name: p.read_text().strip() for p in stack_root.glob("*.pid")}
    again = LocalStack(root=stack_root, ports=stack.ports, kafka_libs=KAFKA_LIBS)
    again.start()
    assert {p.name: p.read_text().strip() for p in stack_root.glob("*.pid")} == pids
    assert again.env == env


def test_busy_port_names_service_and_port(stack_root: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        service = RedisService(stack_root / "busy", port)
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("REDIS_URL", raising=False)
            with pytest.raises(PortInUseError, match=rf"redis: port 127\.0\.0\.1:{port} "):
                service.start()


def _key_row(database_url: str, secret: str) -> tuple[str, bool] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select tenant_id::text, is_active from api_keys where key_hash = %s",
            (hash_key(secret),),
        ).fetchone()
    return None if row is None else (row[0], row[1])


def test_demo_key_is_kept_across_restarts_and_replaced_only_when_unusable(
    stack: LocalStack, stack_root: Path
) -> None:
    """`make run`'s demo key: kept in a 0600 file, reused while valid, never revoked by it."""
    database_url = stack.env["DATABASE_URL"]
    migrate(database_url)
    settings = stack_settings(stack.env)
    key_file = stack_root / "demo-key"
    legacy = stack_root / "demo-key.id"
    legacy.write_text(f"{uuid.uuid4()}\n")  # what earlier versions kept

    first = demo_key(settings, key_file)
    assert first.new_because == "none was kept yet"
    assert key_file.read_text() == first.secret + "\n"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not legacy.exists()
    assert _key_row(database_url, first.secret) == (str(DEMO_TENANT), True)
    assert first.secret not in repr(first)

    key_file.chmod(0o644)  # loosened by hand: put back
    again = demo_key(settings, key_file)
    assert (again.secret, again.key_id, again.new_because) == (first.secret, first.key_id, None)
    assert key_file.stat().st_mode & 0o777 == 0o600

    assert revoke_key(database_url, uuid.UUID(first.key_id))
    after_revoke = demo_key(settings, key_file)
    assert after_revoke.secret != first.secret
    assert after_revoke.new_because is not None
    assert first.key_id in after_revoke.new_because
    assert "revoked" in after_revoke.new_because
    assert key_file.read_text() == after_revoke.secret + "\n"

    rotate_key(database_url, uuid.UUID(after_revoke.key_id), grace=timedelta(0))
    after_expiry = demo_key(settings, key_file)
    assert after_expiry.new_because is not None and "expired" in after_expiry.new_because
    # Nothing was revoked on the way: the expired key is still active, only past its expiry.
    assert _key_row(database_url, after_revoke.secret) == (str(DEMO_TENANT), True)

    key_file.write_text(format_key(os.urandom(32)) + "\n")  # well formed, never stored
    unknown = demo_key(settings, key_file)
    assert unknown.new_because == "the kept one is not in this database"

    key_file.write_text("not a key\n")
    garbled = demo_key(settings, key_file)
    assert garbled.new_because == f"{key_file} is not a key"
    assert demo_key(settings, key_file).new_because is None
