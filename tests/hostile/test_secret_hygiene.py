"""Secret hygiene (reliability plan S3): no API key is written anywhere.

Traffic first, with every kind of key (valid, revoked, expired, without the scope, unknown,
malformed, rate-limited), inline and through gateway mode (`authorize` signs a principal, an
ingest function in gateway mode accepts it), every function at `LOG_LEVEL=DEBUG` so that a
leak would show. Then every issued or presented key (the full string, the part after `aik_`
and its 40-character random core) is searched for in:

- every log file the function processes wrote (this tier's and, when run in the same session,
  the e2e tier's) and the stack's own server logs;
- every record (key, value, every header) of every topic;
- every column of every row of every table (`SELECT *`), where `api_keys.key_hash` must be
  exactly the SHA-256 hex digest of the key;
- every Redis key and string or hash value.

Expected: 0 hits. The gateway's signing secret and the signed principals are searched for too.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import psycopg
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from devstack import LocalStack

from audit_ingest.adapters.key_admin import IssuedKey, revoke_key
from audit_ingest.domain.gateway_token import (
    KEY_ID_HEADER,
    PRINCIPAL_HEADER,
    RATE_LIMIT_HEADER,
    TENANT_HEADER,
)
from audit_ingest.domain.keys import KEY_PREFIX, format_key
from audit_ingest.settings import Settings
from tests.functions import FunctionProcess, start_function, stop_function
from tests.hostile.tier import HostileFunctions, presented_keys, record_presented
from tests.stack import KeyFactory
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e

SIGNING_SECRET = "hygiene-" + secrets.token_urlsafe(32)
UPSTREAM = (PRINCIPAL_HEADER, TENANT_HEADER, KEY_ID_HEADER, RATE_LIMIT_HEADER)
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def gateway(
    hostile_env: dict[str, str], log_dir: Path
) -> Iterator[tuple[FunctionProcess, FunctionProcess]]:
    """`authorize` and an ingest function in gateway mode, both logging at DEBUG."""
    folder = log_dir / "hostile"
    (folder / "gateway").mkdir(parents=True, exist_ok=True)
    env = {**hostile_env, "GATEWAY_SIGNING_SECRET": SIGNING_SECRET}
    authorize = start_function("authorize", {**env, "K_SERVICE": "authorize"}, folder)
    gateway_env = {**env, "AUTH_MODE": "gateway", "K_SERVICE": "ingest-event-gw"}
    gateway_env.pop("DATABASE_URL", None)
    try:
        ingest = start_function("ingest_event", gateway_env, folder / "gateway")
    except BaseException:
        stop_function(authorize)
        raise
    yield authorize, ingest
    for function in (authorize, ingest):
        stop_function(function)


def post(url: str, body: object, key: str | None, **headers: str) -> httpx.Response:
    all_headers = {"content-type": "application/json", **headers}
    if key is not None:
        all_headers["x-api-key"] = key
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(url, content=content, headers=all_headers, timeout=20)


def drive_traffic(
    hostile: HostileFunctions,
    gateway: tuple[FunctionProcess, FunctionProcess],
    keys: dict[str, str],
) -> list[str]:
    """Every kind of key, inline and through the gateway; returns the principals signed."""
    principals: list[str] = []
    authorize, gateway_ingest = gateway
    single, batch = f"{hostile.single_url}/v1/events", f"{hostile.batch_url}/v1/events/batch"
    for kind, key in keys.items():
        for _ in range(3 if kind == "rate_limited" else 1):
            post(single, seed_event(), key, **{"x-request-id": f"hygiene-{kind}"})
        post(single, {"actor": {"id": 5}}, key)  # 400: a dead letter
        post(single, b"{not json", key)
        post(batch, {"events": [seed_event(), {"actor": {}}]}, key)
        post(single, seed_event(), key, **{"idempotency-key": f"hygiene-{kind}"})
        granted = httpx.get(f"{authorize.url}/authorize", headers={"x-api-key": key}, timeout=10)
        if granted.status_code == 200:
            upstream = {name: granted.headers[name] for name in UPSTREAM}
            principals.append(upstream[PRINCIPAL_HEADER])
            accepted = post(f"{gateway_ingest.url}/v1/events", seed_event(), None, **upstream)
            assert accepted.status_code == 202, accepted.text
            post(f"{gateway_ingest.url}/v1/events", {"actor": 1}, None, **upstream)
        # A key sent to the gateway-mode function directly (bypassing the gateway): 401.
        post(f"{gateway_ingest.url}/v1/events", seed_event(), key)
    return principals


def needles_of(key: str) -> set[str]:
    """The key, its part after the prefix, and its random core (without the checksum)."""
    found = {key}
    if key.startswith(KEY_PREFIX) and len(key) > len(KEY_PREFIX) + 20:
        secret = key[len(KEY_PREFIX) :]
        found |= {secret, secret[:40]}
    return found


def log_files(log_dir: Path, stack: LocalStack) -> list[Path]:
    """Every file the function processes wrote, and the stack's server logs (not Kafka's data
    segments, which are named by offset and hold the records, read from the topics below)."""
    files = [p for p in log_dir.rglob("*") if p.is_file()]
    files += [
        p
        for p in stack.root.rglob("*.log")
        if p.is_file() and not p.stem.isdigit() and p.stat().st_size < 200 * 1024 * 1024
    ]
    return files


def topic_records(bootstrap: str) -> Iterator[tuple[str, bytes]]:
    """(where, bytes) for the key, value and every header of every record of every topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"hygiene-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        topics = consumer.list_topics(timeout=10).topics
        assignment = [
            TopicPartition(name, partition, 0)
            for name, topic in topics.items()
            if not name.startswith("__")
            for partition in topic.partitions
        ]
        consumer.assign(assignment)
        remaining = {(tp.topic, tp.partition) for tp in assignment}
        idle = 0
        while remaining and idle < 50:
            message = consumer.poll(0.2)
            if message is None:
                idle += 1
                continue
            idle = 0
            where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
            if message.error() is not None:
                remaining.discard((message.topic(), message.partition()))
                continue
            yield f"{where} key", message.key() or b""
            yield f"{where} value", message.value() or b""
            # A consumed record's headers are a list of (name, value) pairs (confluent-kafka
            # types them as that or a dict, the form a producer may be given).
            for name, value in cast(list[tuple[str, str | bytes | None]], message.headers() or []):
                raw = value.encode() if isinstance(value, str) else (value or b"")
                yield f"{where} header {name}", name.encode() + b"=" + raw
        assert not remaining, f"topics not read to the end: {sorted(remaining)}"
    finally:
        consumer.close()


def database_rows(conninfo: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    with psycopg.connect(conninfo) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_type = 'BASE TABLE'"
        ).fetchall()
        assert ("public", "api_keys") in tables, tables
        for schema, table in tables:
            cursor = conn.execute(f'SELECT * FROM "{schema}"."{table}"')  # noqa: S608
            names = [column.name for column in cursor.description or []]
            for row in cursor:
                yield schema, table, dict(zip(names, row, strict=True))


def redis_items(url: str) -> Iterator[tuple[str, bytes]]:
    client = redis.Redis.from_url(url)
    try:
        for name in client.scan_iter(count=1000):
            yield "redis key", name
            kind = client.type(name)
            if kind == b"string":
                yield f"redis {name!r}", cast(bytes | None, client.get(name)) or b""
            elif kind == b"hash":
                for field, value in cast(dict[bytes, bytes], client.hgetall(name)).items():
                    yield f"redis {name!r}", field + b"=" + value
    finally:
        client.close()


def test_no_key_material_anywhere(
    hostile: HostileFunctions,
    gateway: tuple[FunctionProcess, FunctionProcess],
    issue_session_key: KeyFactory,
    settings: Settings,
    stack: LocalStack,
    log_dir: Path,
) -> None:
    conninfo = settings.database_url.get_secret_value()
    valid = issue_session_key(name="hygiene")
    revoked = issue_session_key(name="hygiene-revoked")
    revoke_key(conninfo, uuid.UUID(revoked.stored.id))
    expired = issue_session_key(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    read_only = issue_session_key(scopes=("events:read",))
    limited = issue_session_key(rate_limit=1)
    unknown = format_key(secrets.token_bytes(32))
    malformed = KEY_PREFIX + secrets.token_hex(23)  # right length, wrong alphabet/checksum
    for key in (unknown, malformed):
        record_presented(key)
    keys = {
        "valid": valid.secret,
        "revoked": revoked.secret,
        "expired": expired.secret,
        "read_only": read_only.secret,
        "rate_limited": limited.secret,
        "unknown": unknown,
        "malformed": malformed,
    }
    principals = drive_traffic(hostile, gateway, keys)
    assert principals, "the gateway signed no principal: gateway mode was not exercised"
    for function in gateway:
        stop_function(function)  # everything it logged is on disk

    needles: dict[bytes, str] = {}
    for key in presented_keys() | set(keys.values()):
        for needle in needles_of(key):
            needles[needle.encode()] = f"key {key[:8]}…"
    needles[SIGNING_SECRET.encode()] = "the gateway signing secret"
    for principal in principals:
        needles[principal.encode()] = "a signed principal"
    pattern = re.compile(b"|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)))
    hits: list[str] = []

    def search(where: str, data: bytes) -> None:
        hits.extend(f"{where}: {needles[m.group()]}" for m in pattern.finditer(data))

    # The search finds what it should: a key, its secret part, a JSON-escaped copy.
    search("self-test", b'{"k":"' + valid.secret[4:].encode() + b'"} ' + limited.secret.encode())
    assert len(hits) == 2, hits
    hits.clear()

    files = log_files(log_dir, stack)
    assert any("hostile" in str(p) for p in files), files
    lines = 0
    for path in files:
        data = path.read_bytes()
        lines += data.count(b"\n")
        search(str(path), data)
    assert lines > 0

    records = 0
    for where, data in topic_records(settings.kafka_bootstrap_servers):
        records += where.endswith(" value")
        search(where, data)

    hashes = {hashlib.sha256(key.encode()).hexdigest(): key for key in keys.values()}
    issued: list[IssuedKey] = [valid, revoked, expired, read_only, limited]
    stored_hashes: dict[str, str] = {}
    rows = 0
    for schema, table, row in database_rows(conninfo):
        rows += 1
        for column, value in row.items():
            text = "" if value is None else str(value)
            if (schema, table, column) == ("public", "api_keys", "key_hash"):
                assert SHA256_HEX.match(text), f"api_keys.key_hash is not SHA-256 hex: {text!r}"
                stored_hashes[str(row["id"])] = text
            search(f"{schema}.{table}.{column}", text.encode())
    for issued_key in issued:
        stored_id, secret = issued_key.stored.id, issued_key.secret
        assert stored_hashes[stored_id] == hashlib.sha256(secret.encode()).hexdigest()
    assert not set(stored_hashes.values()) & {
        hashlib.sha256(k.encode()).hexdigest() for k in (unknown, malformed)
    }, "a key that was never issued has a row"
    assert hashes  # the digests themselves may appear (they are what is stored)

    for where, data in redis_items(settings.redis_url.get_secret_value()):
        search(where, data)

    print(
        f"\nsecret hygiene: {len(needles)} needles ({len(presented_keys() | set(keys.values()))}"
        f" keys); {len(files)} log files, {lines} lines; {records} Kafka records; "
        f"{rows} database rows; hits: {len(hits)}"
    )
    assert not hits, "key material found:\n" + "\n".join(sorted(set(hits))[:50])
