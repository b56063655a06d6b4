"""The operator commands (`keys rotate`, `dlq inspect`, `dlq replay`, `stack status`) as an
operator runs them: real processes against the real stack, and a real ingest function where
the answer an integrator gets is what matters (rotation, /ready)."""

from __future__ import annotations

import asyncio
import os
import pty
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from devstack.ports import free_ports

from audit_ingest.adapters.postgres import PostgresKeyStore
from audit_ingest.domain.dead_letters import build_dead_letter
from audit_ingest.domain.keys import StoredKey, authorize, hash_key, is_well_formed
from audit_ingest.domain.timestamps import format_rfc3339_ms
from audit_ingest.errors import FieldError, Forbidden
from audit_ingest.settings import Settings
from tests.functions import E2E_SETTINGS, FunctionProcess, start_function, stop_function
from tests.stack import KeyFactory, TopicReader

pytestmark = pytest.mark.integration
Reader = Callable[[str], TopicReader]
CACHE_TTL = float(E2E_SETTINGS["KEY_CACHE_TTL_SECONDS"])


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """The commands run here: no `.dev/stack.env` of a `make run` is read by accident."""
    folder = Path(tempfile.mkdtemp(prefix="audit-ingest-ops-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def cli(
    env: dict[str, str],
    *args: str,
    cwd: Path,
    check: bool = True,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("audit-ingest", path=str(Path(sys.executable).parent))
    assert executable
    base = {k: v for k, v in os.environ.items() if k != "INGEST_URL"}
    result = subprocess.run(
        [executable, *args],
        env={**base, **env},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"audit-ingest {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def cli_at_terminal(env: dict[str, str], *args: str, answer: str, cwd: Path) -> tuple[int, str]:
    """Run with a terminal as stdin, typing `answer`; the exit status and all output."""
    executable = shutil.which("audit-ingest", path=str(Path(sys.executable).parent))
    assert executable
    base = {k: v for k, v in os.environ.items() if k != "INGEST_URL"}
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")  # held by the terminal until read
        process = subprocess.Popen(
            [executable, *args],
            env={**base, **env},
            cwd=cwd,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(terminal)
        terminal = -1
        output, _ = process.communicate(timeout=120)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    return process.returncode, output.decode(errors="replace")


@pytest.fixture(scope="module")
def ingest(settings: Settings, stack_env: dict[str, str]) -> Iterator[FunctionProcess]:
    """ingest-event as a real process, caching keys for 1 s (so expiry shows quickly)."""
    env = {**os.environ, **stack_env, **E2E_SETTINGS, "K_SERVICE": "ingest-event"}
    env.pop("PYTHONPATH", None)
    logs = Path(tempfile.mkdtemp(prefix="audit-ingest-ops-fn-"))
    function = start_function("ingest_event", env, logs)
    yield function
    stop_function(function)
    shutil.rmtree(logs, ignore_errors=True)


def post(url: str, key: str, **event: Any) -> httpx.Response:
    body = {
        "actor": {"id": "u-1"},
        "action": {"name": "doc.viewed"},
        "resource": {"type": "doc", "id": "d-1"},
        **event,
    }
    return httpx.post(
        f"{url}/v1/events",
        content=orjson.dumps(body),
        headers={"content-type": "application/json", "x-api-key": key},
        timeout=20,
    )


# -- keys rotate ---------------------------------------------------------------------------


async def _stored(settings: Settings, secret: str) -> StoredKey | None:
    store = PostgresKeyStore(settings.database_url.get_secret_value())
    try:
        return await store.find(hash_key(secret))
    finally:
        await store.close()


def test_rotate_keeps_the_old_key_for_the_grace_period_then_refuses_it(
    stack_env: dict[str, str],
    settings: Settings,
    issue_key: KeyFactory,
    ingest: FunctionProcess,
    workdir: Path,
) -> None:
    old = issue_key(name="crm", rate_limit=77, scopes=("events:write", "events:read"))
    assert post(ingest.url, old.secret).status_code == 202  # cached by the function now

    rotated = cli(
        stack_env, "keys", "rotate", old.stored.id, "--grace", "1h", "--json", cwd=workdir
    )
    new = orjson.loads(rotated.stdout)
    assert is_well_formed(new["key"]) and new["key"] != old.secret
    assert old.secret not in rotated.stdout + rotated.stderr
    assert hash_key(old.secret) not in rotated.stdout + rotated.stderr
    assert (new["tenant_id"], new["name"], new["scopes"], new["rate_limit"]) == (
        old.stored.tenant_id,
        "crm",
        ["events:write", "events:read"],
        77,
    )
    assert new["replaces"]["id"] == old.stored.id and new["expires_at"] is None
    ends = datetime.fromisoformat(new["replaces"]["expires_at"])
    assert abs(ends - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=2)

    # The store's expires_at is what ends the old key: it works until then, not after.
    stored_old = asyncio.run(_stored(settings, old.secret))
    assert stored_old is not None and stored_old.expires_at == ends
    authorize(stored_old, now=ends - timedelta(seconds=1))
    with pytest.raises(Forbidden, match="expired"):
        authorize(stored_old, now=ends)

    # Inside the grace period both keys work, through the function.
    time.sleep(CACHE_TTL + 0.5)
    assert post(ingest.url, old.secret).status_code == 202
    assert post(ingest.url, new["key"]).status_code == 202

    # --grace 0: the rotated key is refused (403, expired) once caches refresh; its successor
    # works, and the first key keeps its own grace period.
    plain = cli(stack_env, "keys", "rotate", new["id"], "--grace", "0", cwd=workdir)
    (newest,) = [word for word in plain.stdout.split() if word.startswith("aik_")]
    assert "expired now" in plain.stdout and "not shown again" in plain.stderr
    time.sleep(CACHE_TTL + 0.5)
    refused = post(ingest.url, new["key"])
    assert refused.status_code == 403, refused.text
    assert "expired" in refused.json()["detail"]
    assert post(ingest.url, newest).status_code == 202
    assert post(ingest.url, old.secret).status_code == 202

    listed = cli(stack_env, "keys", "list", "--tenant", old.stored.tenant_id, "--json", cwd=workdir)
    rows = {row["id"]: row for row in orjson.loads(listed.stdout)}
    assert len(rows) == 3 and all(row["is_active"] for row in rows.values())
    assert rows[new["id"]]["expires_at"] is not None
    assert rows[new["id"]]["status"] == "expired" and rows[old.stored.id]["status"] == "active"


def test_rotate_refuses_unknown_and_revoked_keys(
    stack_env: dict[str, str], issue_key: KeyFactory, workdir: Path
) -> None:
    unknown = cli(stack_env, "keys", "rotate", str(uuid.uuid4()), check=False, cwd=workdir)
    assert unknown.returncode == 1 and "no key" in unknown.stderr
    issued = issue_key()
    cli(stack_env, "keys", "revoke", issued.stored.id, cwd=workdir)
    revoked = cli(stack_env, "keys", "rotate", issued.stored.id, check=False, cwd=workdir)
    assert revoked.returncode == 1 and "revoked" in revoked.stderr and "aik_" not in revoked.stdout
    bad = cli(
        stack_env, "keys", "rotate", issued.stored.id, "--grace", "soon", check=False, cwd=workdir
    )
    assert bad.returncode == 2 and "duration" in bad.stderr


# -- keys set-rate-limit ----------------------------------------------------------------------


def test_set_rate_limit_says_when_it_applies_and_it_does(
    stack_env: dict[str, str], issue_key: KeyFactory, ingest: FunctionProcess, workdir: Path
) -> None:
    issued = issue_key(rate_limit=1000)
    first = post(ingest.url, issued.secret)
    assert first.status_code == 202 and first.headers["x-ratelimit-limit"] == "1000"

    # The function caches keys for CACHE_TTL seconds: the command reads the same setting.
    env = {**stack_env, "KEY_CACHE_TTL_SECONDS": str(CACHE_TTL)}
    changed = cli(env, "keys", "set-rate-limit", issued.stored.id, "1500", cwd=workdir)
    assert changed.stdout == f"{issued.stored.id}: 1500 requests per minute (was 1000)\n"
    notice = " ".join(changed.stderr.split())
    assert f"KEY_CACHE_TTL_SECONDS = {CACHE_TTL:g} s" in notice and "against 1000/min" in notice
    deadline = datetime.fromisoformat(notice.split("Applies by ")[1].split()[0])
    assert deadline - datetime.now(UTC) <= timedelta(seconds=CACHE_TTL + 1)
    assert "limit-count applies it from the key's next 60 s window" in notice

    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.2)
    after = post(ingest.url, issued.secret)
    assert after.status_code == 202 and after.headers["x-ratelimit-limit"] == "1500"

    default_ttl = cli(stack_env, "keys", "set-rate-limit", issued.stored.id, "7", cwd=workdir)
    assert "(was 1500)" in default_ttl.stdout
    assert "KEY_CACHE_TTL_SECONDS = 30 s" in " ".join(default_ttl.stderr.split())
    unknown = cli(
        stack_env, "keys", "set-rate-limit", str(uuid.uuid4()), "5", check=False, cwd=workdir
    )
    assert unknown.returncode == 1 and "no key with id" in unknown.stderr


# -- dlq -------------------------------------------------------------------------------------


def produce_dead_letters(
    settings: Settings, letters: list[tuple[bytes, str, list[FieldError], str]], *, tenant: str
) -> tuple[list[tuple[int, int]], str]:
    """Write dead letters exactly as the service builds them; their positions and key id."""
    api_key_id = str(uuid.uuid4())
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    positions: list[tuple[int, int]] = []

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        positions.append((message.partition(), message.offset()))

    for value, reason, errors, request_id in letters:
        record = build_dead_letter(
            value,
            topic=settings.kafka_dlq_topic,
            reason=reason,
            errors=errors,
            tenant_id=tenant,
            request_id=request_id,
            received_at=format_rfc3339_ms(datetime.now(UTC)),
            api_key_id=api_key_id,
        )
        producer.produce(
            record.topic,
            value=record.value,
            key=record.key,
            headers=list(record.headers),
            on_delivery=delivered,
        )
        assert producer.flush(10) == 0  # one at a time: positions in the order given
    assert len(positions) == len(letters)
    return positions, api_key_id


def event_bytes(marker: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "actor": {"id": "u-1"},
            "action": {"name": "Doc.Viewed"},
            "resource": {"type": "doc", "id": marker},
            **extra,
        }
    )


SINK_REJECTED = FieldError("", "The broker refused the event (too large).", "sink_rejected")
RESOURCE_REQUIRED = FieldError("resource", "resource is required.", "required")


def test_dlq_inspect_counts_by_reason_and_tenant_and_hides_values(
    stack_env: dict[str, str], settings: Settings, workdir: Path
) -> None:
    tenant, marker = str(uuid.uuid4()), str(uuid.uuid4())
    missing_resource = orjson.dumps({"actor": {"id": marker}, "action": {"name": "x"}})
    letters = [
        (event_bytes(marker), "produce_failed", [SINK_REJECTED], "req-a"),
        (missing_resource, "validation_failed", [RESOURCE_REQUIRED], "req-b"),
        (missing_resource, "validation_failed", [RESOURCE_REQUIRED], "req-c"),
    ]
    positions, _ = produce_dead_letters(settings, letters, tenant=tenant)

    out = cli(stack_env, "dlq", "inspect", "--tenant", tenant, cwd=workdir).stdout
    lines = out.splitlines()
    assert "3 matching record(s)" in lines[0]
    counts = [line.split() for line in lines if line.startswith(("validation_failed", "produce"))]
    assert counts == [
        ["validation_failed", tenant, "2"],
        ["produce_failed", tenant, "1"],
    ]
    rows = [line.split() for line in lines if line.split()[:1] and "@" in line.split()[0]]
    assert [row[0] for row in rows] == [f"{p}@{o}" for p, o in reversed(positions)]
    assert rows[0][3:] == ["validation_failed", "resource/required", "req-c"]
    assert rows[-1][3:] == ["produce_failed", "(event)/sink_rejected", "req-a"]
    assert marker not in out  # no values by default

    shown = cli(
        stack_env,
        "dlq",
        "inspect",
        "--tenant",
        tenant,
        "--reason",
        "produce_failed",
        "--show-values",
        cwd=workdir,
    ).stdout
    assert "1 matching record(s)" in shown and f'"id":"{marker}"' in shown
    assert "validation_failed" not in shown

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none = cli(stack_env, "dlq", "inspect", "--tenant", tenant, "--since", later, cwd=workdir)
    assert "0 matching record(s)" in none.stdout


def _records_with(reader: TopicReader, marker: str) -> list[dict[str, Any]]:
    found = []
    for message in reader.drain():
        value = message.value() or b""
        if marker.encode() in value:
            found.append(orjson.loads(value))
    reader.messages.clear()
    return found


def test_dlq_replay_stores_a_fixed_record_exactly_once(
    stack_env: dict[str, str], settings: Settings, workdir: Path, read_topic: Reader
) -> None:
    tenant, marker = str(uuid.uuid4()), str(uuid.uuid4())
    letters = [
        # Refused by the broker at the time (produce_failed); valid, and storable now.
        (event_bytes(marker), "produce_failed", [SINK_REJECTED], "req-fixed"),
        # Still invalid under today's rules.
        (
            orjson.dumps({"actor": {"id": marker}, "action": {"name": "x"}}),
            "validation_failed",
            [RESOURCE_REQUIRED],
            "req-broken",
        ),
    ]
    [(partition, offset), broken], api_key_id = produce_dead_letters(
        settings, letters, tenant=tenant
    )
    main_topic = read_topic(settings.kafka_topic)
    dlq_topic = read_topic(settings.kafka_dlq_topic)

    dry = cli(stack_env, "dlq", "replay", "--tenant", tenant, "--dry-run", cwd=workdir).stdout
    assert "would replay 1, already replayed 0, still invalid 1" in dry
    assert _records_with(main_topic, marker) == []

    # Without a terminal nobody can confirm: the command says to pass --yes.
    unconfirmed = cli(
        stack_env, "dlq", "replay", "--tenant", tenant, check=False, stdin="y\n", cwd=workdir
    )
    assert unconfirmed.returncode == 1, unconfirmed.stdout
    assert "pass --yes" in unconfirmed.stderr and "not a terminal" in unconfirmed.stderr
    assert "1 of 2 record(s) would be written" in unconfirmed.stderr
    # At a terminal, it asks; "n" writes nothing.
    declined, output = cli_at_terminal(
        stack_env, "dlq", "replay", "--tenant", tenant, answer="n", cwd=workdir
    )
    assert declined == 1 and "Replay?" in output and "Aborted" in output, output
    # Nothing selected can be written: no question, nothing to confirm.
    only_broken = cli(
        stack_env, "dlq", "replay", "--request-id", "req-broken", "--tenant", tenant, cwd=workdir
    ).stdout
    assert "nothing to replay: would replay 0, already replayed 0, still invalid 1" in only_broken
    assert f"{broken[0]}@{broken[1]}  still invalid: resource/required" in only_broken
    assert _records_with(main_topic, marker) == []

    first = cli(stack_env, "dlq", "replay", "--tenant", tenant, "--yes", cwd=workdir).stdout
    assert "replayed 1, already replayed 0, still invalid 1, failed 0" in first
    assert f"{broken[0]}@{broken[1]}  still invalid: resource/required" in first
    (stored,) = _records_with(main_topic, marker)
    assert stored["request_id"] == f"dlq-replay:{partition}:{offset}"
    assert (stored["tenant_id"], stored["api_key_id"]) == (tenant, api_key_id)
    assert stored["action"] == {"name": "doc.viewed"}  # enriched by today's code
    assert stored["processing"]["function"] == "dlq-replay"

    again = cli(stack_env, "dlq", "replay", "--tenant", tenant, "--yes", cwd=workdir).stdout
    assert "replayed 0, already replayed 1, still invalid 1, failed 0" in again
    unasked = cli(stack_env, "dlq", "replay", "--tenant", tenant, cwd=workdir).stdout
    assert "nothing to replay: would replay 0, already replayed 1, still invalid 1" in unasked
    by_position = cli(
        stack_env,
        "dlq",
        "replay",
        "--partition",
        str(partition),
        "--offset",
        str(offset),
        "--yes",
        cwd=workdir,
    ).stdout
    assert "replayed 0, already replayed 1" in by_position
    assert _records_with(main_topic, marker) == []  # nothing new since the first replay
    dry_again = cli(stack_env, "dlq", "replay", "--tenant", tenant, "--dry-run", cwd=workdir)
    assert "would replay 0, already replayed 1, still invalid 1" in dry_again.stdout

    # The still-invalid record was reported, never dead-lettered again.
    assert len(_records_with(dlq_topic, marker)) == 2


def test_dlq_replay_applies_a_rule_relaxed_since(
    stack_env: dict[str, str], settings: Settings, workdir: Path, read_topic: Reader
) -> None:
    tenant, marker = str(uuid.uuid4()), str(uuid.uuid4())
    long_note = "n" * (settings.max_string_length + 100)
    too_long = FieldError("context.note", "context.note is too long.", "too_long")
    [(partition, offset)], _ = produce_dead_letters(
        settings,
        [(event_bytes(marker, context={"note": long_note}), "validation_failed", [too_long], "r")],
        tenant=tenant,
    )
    main_topic = read_topic(settings.kafka_topic)
    args = ("dlq", "replay", "--partition", str(partition), "--offset", str(offset), "--yes")

    still = cli(stack_env, *args, cwd=workdir).stdout
    assert "replayed 0, already replayed 0, still invalid 1" in still
    assert "context.note/too_long" in still

    relaxed = {**stack_env, "MAX_STRING_LENGTH": str(settings.max_string_length * 2)}
    now_valid = cli(relaxed, *args, cwd=workdir).stdout
    assert "replayed 1, already replayed 0, still invalid 0" in now_valid
    (stored,) = _records_with(main_topic, marker)
    assert stored["context"]["note"] == long_note


def test_dlq_replay_reports_unknown_positions(stack_env: dict[str, str], workdir: Path) -> None:
    missing = cli(
        stack_env,
        "dlq",
        "replay",
        "--partition",
        "0",
        "--offset",
        "999999999",
        "--yes",
        check=False,
        cwd=workdir,
    )
    assert missing.returncode == 1 and "0@999999999: no such record" in missing.stderr
    unpaired = cli(stack_env, "dlq", "replay", "--partition", "0", check=False, cwd=workdir)
    assert unpaired.returncode == 2 and "pairs" in unpaired.stderr


# -- stack status ------------------------------------------------------------------------------


def test_stack_status_all_up(
    stack_env: dict[str, str], settings: Settings, ingest: FunctionProcess, workdir: Path
) -> None:
    env = {**stack_env, "INGEST_URL": ingest.url}
    result = cli(env, "stack", "status", cwd=workdir)
    states = {
        line.split()[0]: line.split()[1]
        for line in result.stdout.splitlines()[:-1]
        if line.split() and line.split()[0] in ("postgres", "redis", "kafka", "ingest")
    }
    assert states == {"postgres": "ok", "redis": "ok", "kafka": "ok", "ingest": "ok"}
    assert result.stdout.splitlines()[-1] == "all up"
    assert f"{settings.kafka_topic}: 3 partition(s), 0 under-replicated" in result.stdout

    document = orjson.loads(cli(env, "stack", "status", "--json", cwd=workdir).stdout)
    assert document["ok"] is True
    checks = {check["name"]: check for check in document["checks"]}
    assert checks["postgres"]["migrations_pending"] == []
    assert checks["kafka"]["topics"][settings.kafka_dlq_topic]["under_replicated"] == 0
    assert checks["ingest"]["ready"]["status"] == "ready"
    assert all(checks[name]["latency_ms"] > 0 for name in ("postgres", "redis", "kafka"))

    # INGEST_URL is read from the env file too (make run writes it to .dev/stack.env).
    env_file = workdir / "stack.env"
    env_file.write_text(
        "".join(f"{k}={v}\n" for k, v in stack_env.items()) + f"INGEST_URL={ingest.url}\n"
    )
    from_file = cli({}, "--env-file", str(env_file), "stack", "status", "--json", cwd=workdir)
    ingest_check = orjson.loads(from_file.stdout)["checks"][3]
    assert ingest_check["state"] == "ok" and ingest_check["url"] == f"{ingest.url}/ready"


def test_stack_status_names_what_is_down(stack_env: dict[str, str], workdir: Path) -> None:
    (dead_port, dead_http) = free_ports(2)
    env = {
        **stack_env,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead_port}",
        "INGEST_URL": f"http://127.0.0.1:{dead_http}",
    }
    result = cli(env, "stack", "status", "--timeout", "2", check=False, cwd=workdir)
    assert result.returncode == 1, result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    assert lines["kafka"].split()[1] == "down"
    assert f"no broker answered at 127.0.0.1:{dead_port}" in lines["kafka"]
    assert lines["ingest"].split()[1] == "down"
    assert lines["postgres"].split()[1] == "ok" and lines["redis"].split()[1] == "ok"
    assert result.stdout.splitlines()[-1] == "not healthy: kafka, ingest"
    document = orjson.loads(
        cli(env, "stack", "status", "--json", "--timeout", "2", check=False, cwd=workdir).stdout
    )
    assert document["ok"] is False
    assert [c["name"] for c in document["checks"] if c["state"] == "down"] == ["kafka", "ingest"]
