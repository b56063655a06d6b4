"""`audit-ingest` as an operator runs it: a real process against the real stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from audit_ingest.domain.keys import hash_key, is_well_formed
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
    (row,) = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert row["id"] == document["id"] and row["is_active"] is True
    assert document["key"] not in listed.stdout and hash_key(document["key"]) not in listed.stdout

    assert "revoked" in cli(stack_env, "keys", "revoke", document["id"]).stdout
    listed = cli(stack_env, "keys", "list", "--tenant", tenant, "--json")
    assert orjson.loads(listed.stdout)["is_active"] is False
    missing = cli(stack_env, "keys", "revoke", str(uuid.uuid4()), check=False)
    assert missing.returncode != 0 and "no key" in missing.stderr


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
