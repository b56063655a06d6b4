"""The sealer against the real stack: records sealed; tampered exports found at the right
offset; an inclusion proof checked offline; a sealer killed with SIGKILL inside a
transaction and restarted leaves no gap and no duplicate range."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from audit_ingest.adapters import seal_store
from audit_ingest.adapters.kafka_admin import TopicSpec, create_topics
from audit_ingest.cli import main
from audit_ingest.domain.checkpoint import SealRecord
from audit_ingest.domain.seal_keys import SigningKey
from audit_ingest.settings import Settings
from tests.stack import REPO

pytestmark = pytest.mark.integration
PARTITIONS = 3


@dataclass
class Sealed:
    """One pair of topics of this module's own, with a signing key."""

    env: dict[str, str]
    settings: Settings
    key_file: Path
    folder: Path

    def produce(self, count: int) -> list[str]:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap_servers})
        ids = []
        for i in range(count):
            event_id = str(uuid.uuid4())
            tenant = f"tenant-{i % 5}"
            value = {
                "event_id": event_id,
                "tenant_id": tenant,
                "actor": {"id": f"user-{i}", "type": "user"},
                "action": {"name": "document.update"},
                "resource": {"type": "document", "id": f"doc-{i}"},
                "result": {"success": True},
                "metadata": {"n": i},
            }
            producer.produce(self.settings.kafka_topic, orjson.dumps(value), key=tenant.encode())
            ids.append(event_id)
        assert producer.flush(10) == 0
        return ids

    def sealer(self, *argv: str) -> subprocess.Popen[bytes]:
        command = argv or ("-m", "audit_ingest.cli", "seals", "run")
        return subprocess.Popen(
            [sys.executable, *command],
            env={**os.environ, **self.env},
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "sealer.log").open("ab"),
        )

    def seals(self) -> dict[int, list[SealRecord]]:
        connection = self.settings.kafka_connection()
        return {
            p: seal_store.read_seals(
                connection, self.settings.seals_topic, self.settings.kafka_topic, p
            )
            for p in range(PARTITIONS)
        }

    def wait_sealed(self, timeout: float = 40.0) -> dict[int, list[SealRecord]]:
        """Until every stored record is sealed; returns the seals."""
        connection = self.settings.kafka_connection()
        deadline = time.monotonic() + timeout
        while True:
            highs = {
                p: seal_store.watermarks(connection, self.settings.kafka_topic, p)[1]
                for p in range(PARTITIONS)
            }
            seals = self.seals()
            done = all(
                (seals[p][-1].checkpoint.last_offset + 1 if seals[p] else 0) >= highs[p]
                for p in range(PARTITIONS)
            )
            if done:
                return seals
            if time.monotonic() > deadline:
                log = (self.folder / "sealer.log").read_text()[-3000:]
                pytest.fail(f"not sealed in {timeout} s: {highs}\n{log}")
            time.sleep(0.5)

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(
            main, ["--env-file", str(self.folder / "empty.env"), *args], env=self.env
        )


@pytest.fixture
def sealed(settings: Settings, tmp_path: Path) -> Iterator[Sealed]:
    name = f"seal-test-{uuid.uuid4().hex[:8]}"
    topic, seals_topic = f"{name}.events", f"{name}.seals"
    create_topics(
        settings.kafka_connection(),
        [
            TopicSpec(topic, PARTITIONS, 1, {"min.insync.replicas": "1"}),
            TopicSpec(seals_topic, PARTITIONS, 1, {"retention.ms": "-1"}),
        ],
    )
    key = SigningKey.generate()
    key_file = tmp_path / "seal-key.pem"
    key_file.write_bytes(key.pem())
    (tmp_path / "empty.env").write_text("")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC": topic,
        "SEALS_TOPIC": seals_topic,
        "SEAL_SIGNING_KEY_FILE": str(key_file),
        "SEAL_MAX_RECORDS": "25",
        "SEAL_MAX_SECONDS": "0.5",
        "SEALER_GROUP_ID": f"{name}-sealer",
        "SEALER_TRANSACTIONAL_ID": f"{name}-sealer-0",
        "SEALER_METRICS_PORT": "0",
        "PYTHONPATH": str(REPO),
    }
    yield Sealed(
        env,
        Settings(
            **cast(dict[str, Any], {k.lower(): v for k, v in env.items() if k != "PYTHONPATH"})
        ),
        key_file,
        tmp_path,
    )
    AdminClient({**settings.kafka_connection()}).delete_topics([topic, seals_topic])


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tile(seals: dict[int, list[SealRecord]], highs: dict[int, int]) -> None:
    """Per partition: sequences 0, 1, ...; each range right after the last; all records."""
    for partition, chain in seals.items():
        assert [s.checkpoint.sequence for s in chain] == list(range(len(chain)))
        ranges = [(s.checkpoint.first_offset, s.checkpoint.last_offset) for s in chain]
        assert len(set(ranges)) == len(ranges), f"duplicate range in {partition}: {ranges}"
        for before, after in itertools.pairwise(chain):
            assert after.checkpoint.first_offset == before.checkpoint.last_offset + 1
            assert after.checkpoint.prev_hash == before.checkpoint.digest()
        if highs[partition]:
            assert chain[0].checkpoint.first_offset == 0
            assert chain[-1].checkpoint.last_offset + 1 >= highs[partition]


def export(sealed: Sealed, path: Path, *flags: str) -> list[str]:
    done = sealed.cli("events", "tail", *flags, "--from-beginning", "--max", "5000", "--idle", "1")
    assert done.exit_code == 0, done.output
    path.write_text(done.output)
    return done.output.split("\n")


def test_sealed_then_tampered_exports_and_proofs(sealed: Sealed, tmp_path: Path) -> None:
    ids = sealed.produce(150)
    process = sealed.sealer()
    try:
        seals = sealed.wait_sealed()
    finally:
        stop(process)
    assert sum(s.checkpoint.count for chain in seals.values() for s in chain) == 150
    assert max(s.checkpoint.count for chain in seals.values() for s in chain) <= 25

    verified = sealed.cli("seals", "verify", "--json")
    assert verified.exit_code == 0, verified.output
    report = orjson.loads(verified.output)
    assert report["ok"] and sum(p["records"] for p in report["partitions"]) == 150

    events_file, seals_file = tmp_path / "events.txt", tmp_path / "seals.txt"
    lines = export(sealed, events_file)
    export(sealed, seals_file, "--seals")
    ok = sealed.cli("seals", "verify-export", str(events_file), "--seals", str(seals_file))
    assert ok.exit_code == 0, ok.output

    # The partition with the most records, and three of its records in the middle.
    heads = [(i, re.match(r"# \S+\[(\d+)\]@(\d+) ", line)) for i, line in enumerate(lines)]
    blocks = [(i, int(m[1]), int(m[2])) for i, m in heads if m]
    partition = max(range(PARTITIONS), key=lambda p: sum(1 for b in blocks if b[1] == p))
    mine = sorted((offset, i) for i, p, offset in blocks if p == partition)
    (k, at), (_, at_next) = mine[len(mine) // 2], mine[len(mine) // 2 + 1]

    def check(name: str, mutated: list[str], reason: str, seals_path: Path = seals_file) -> None:
        path = tmp_path / f"{name}.txt"
        path.write_text("\n".join(mutated))
        done = sealed.cli("seals", "verify-export", str(path), "--seals", str(seals_path))
        assert done.exit_code == 1, done.output
        assert f"partition {partition}: FAILED at offset {k}: {reason}:" in done.output, done.output

    changed = list(lines)
    changed[at + 2] = changed[at + 2].replace('"user-', '"usEr-', 1)  # one byte
    check("changed", changed, "changed")
    deleted = lines[:at] + lines[at + 3 :]
    check("deleted", deleted, "missing")
    swapped = list(lines)
    swapped[at + 2], swapped[at_next + 2] = swapped[at_next + 2], swapped[at + 2]
    check("swapped", swapped, "reordered")

    # A forged signature on the seal that covers offset k (in the exported seals).
    seal_lines = seals_file.read_text().split("\n")
    for i, line in enumerate(seal_lines):
        if line.startswith("{"):
            seal = SealRecord.decode(line.encode())
            cp = seal.checkpoint
            if cp.partition == partition and cp.covers(k):
                forged = SealRecord(cp, SigningKey.generate().sign(cp.signed_bytes()), seal.leaves)
                seal_lines[i] = forged.encode().decode()
                k = cp.first_offset  # found at the start of that seal's range
    forged_file = tmp_path / "forged-seals.txt"
    forged_file.write_text("\n".join(seal_lines))
    check("forged", list(lines), "bad_signature", forged_file)

    # An inclusion proof, checked offline; it fails for a modified event.
    keys_file, proof_file, event_file = (tmp_path / n for n in ("keys.json", "p.json", "e.json"))
    published = sealed.cli("seals", "public-keys", "--key", str(sealed.key_file))
    assert published.exit_code == 0, published.output
    keys_file.write_text(published.output)
    proved = sealed.cli("seals", "prove", ids[42], "--event-out", str(event_file))
    assert proved.exit_code == 0, proved.output
    proof_file.write_text(proved.output)
    assert orjson.loads(proved.output)["event_id"] == ids[42]
    args = [str(proof_file), "--event", str(event_file), "--public-keys", str(keys_file)]
    good = CliRunner().invoke(
        main, ["seals", "check-proof", *args], env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )
    assert good.exit_code == 0 and "proof ok" in good.output, good.output
    event_file.write_bytes(event_file.read_bytes().replace(b'"success":true', b'"success":false'))
    bad = CliRunner().invoke(main, ["seals", "check-proof", *args])
    assert bad.exit_code == 1 and "proof FAILED: event:" in bad.output, bad.output


def test_a_sealer_killed_inside_a_transaction_leaves_no_gap_and_no_duplicate(
    sealed: Sealed, tmp_path: Path
) -> None:
    sealed.produce(120)
    marker = tmp_path / "in-transaction"
    crashing = sealed.sealer(
        str(REPO / "tests" / "integration" / "sealer_crash.py"), "3", str(marker)
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert crashing.poll() is None, (tmp_path / "sealer.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the sealer never reached its third commit"
            time.sleep(0.1)
        os.kill(crashing.pid, signal.SIGKILL)
        assert crashing.wait(10) == -signal.SIGKILL
    finally:
        if crashing.poll() is None:
            crashing.kill()
    before = sealed.seals()
    assert sum(len(chain) for chain in before.values()) == 2  # two committed, one aborted
    sealed.produce(40)
    process = sealed.sealer()
    try:
        seals = sealed.wait_sealed()
    finally:
        stop(process)
    connection = sealed.settings.kafka_connection()
    highs = {
        p: seal_store.watermarks(connection, sealed.settings.kafka_topic, p)[1]
        for p in range(PARTITIONS)
    }
    tile(seals, highs)
    assert sum(s.checkpoint.count for chain in seals.values() for s in chain) == 160
    verified = sealed.cli("seals", "verify")
    assert verified.exit_code == 0, verified.output
