"""Verification, proofs and exports of the pure sealing core: every kind of tampering is
found at its offset; every proof of trees of 1..300 leaves verifies, and only for its leaf."""

from __future__ import annotations

import hashlib
import json
from functools import cache

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_ingest.domain import merkle
from audit_ingest.domain.checkpoint import SealRecord
from audit_ingest.domain.seal_errors import SealError
from audit_ingest.domain.seal_export import parse_export
from audit_ingest.domain.seal_keys import KeyRing, SigningKey
from audit_ingest.domain.seal_proof import build_proof, check_proof
from audit_ingest.domain.seal_verify import RecordCopy, verify_copy, verify_partition
from audit_ingest.domain.sealing import PartitionSealer

KEY = SigningKey.generate()
KEYS = KeyRing([KEY.public()])
TOPIC = "audit.events.v1"


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 MTH written out from the RFC's definition, as the oracle."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = reference_root(leaves[:k]), reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def fake_leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + str(i).encode()).digest() for i in range(n)]


def test_roots_match_the_rfc_definition() -> None:
    assert merkle.root([]) == hashlib.sha256(b"").digest()
    for n in (1, 2, 3, 5, 8, 13, 64, 100):
        assert merkle.root(fake_leaves(n)) == reference_root(fake_leaves(n))


def test_every_proof_of_trees_of_1_to_300_leaves_verifies() -> None:
    for n in range(1, 301):
        leaves = fake_leaves(n)
        tree = merkle.Tree(leaves)
        top = tree.root()
        assert top == merkle.root(leaves)
        for i in range(n):
            path = tree.path(i)
            assert merkle.verify_inclusion(leaves[i], i, n, path, top), (n, i)
            if n > 1:
                other = (i + 1) % n
                assert not merkle.verify_inclusion(leaves[other], i, n, path, top), (n, i)
                assert not merkle.verify_inclusion(leaves[i], other, n, path, top), (n, i)
                broken = [path[0][::-1], *path[1:]]
                assert not merkle.verify_inclusion(leaves[i], i, n, broken, top), (n, i)
                assert not merkle.verify_inclusion(leaves[i], i, n, path[:-1], top), (n, i)


def value(i: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"0193-{i:06d}",
            "tenant_id": "t-1",
            "actor": {"id": f"user-{i}", "type": "user"},
            "action": {"name": "document.update"},
            "resource": {"type": "document", "id": f"doc-{i % 7}"},
            "result": {"success": i % 2 == 0},
            "metadata": {"n": i, "note": "tab\there"},
        }
    )


def seal_range(values: list[bytes], first: int, sealer: PartitionSealer) -> SealRecord:
    for offset, v in enumerate(values, first):
        sealer.add(offset, v, 0.0)
    record = sealer.cut(KEY, "2026-12-01T00:00:00.000Z")
    sealer.commit()
    return record


@cache
def thousand() -> tuple[list[bytes], list[SealRecord]]:
    """1,000 records of partition 0 in four seals of 250."""
    values = [value(i) for i in range(1000)]
    sealer = PartitionSealer(TOPIC, 0, None)
    seals = [seal_range(values[i : i + 250], i, sealer) for i in range(0, 1000, 250)]
    return values, seals


def copies(values: list[bytes]) -> list[RecordCopy]:
    return [RecordCopy(offset, v) for offset, v in enumerate(values)]


def test_an_untouched_copy_verifies() -> None:
    values, seals = thousand()
    report = verify_partition(0, seals, copies(values), KEYS)
    assert report.ok, report.finding
    assert (report.records, report.checked_from, report.checked_to) == (1000, 0, 999)


def _same_meaning(a: bytes, b: bytes) -> bool:
    """The oracle, independent of the code under test: stdlib JSON, compared re-dumped."""
    try:
        x, y = json.loads(a), json.loads(b)
    except ValueError:
        return False
    return json.dumps(x, sort_keys=True) == json.dumps(y, sort_keys=True)


@given(st.integers(0, 999), st.integers(0, 10_000), st.integers(0, 255))
@settings(max_examples=150, deadline=None)
def test_any_single_byte_change_is_found_at_its_offset(index: int, at: int, byte: int) -> None:
    values, seals = thousand()
    original = values[index]
    position = at % len(original)
    if original[position] == byte:
        byte = (byte + 1) % 256
    changed = original[:position] + bytes([byte]) + original[position + 1 :]
    tampered = [*values[:index], changed, *values[index + 1 :]]
    report = verify_partition(0, seals, copies(tampered), KEYS)
    if _same_meaning(original, changed):  # such as \t spelled \u0009: by design the same
        assert report.ok
        return
    assert report.finding is not None
    assert (report.finding.offset, report.finding.reason) == (index, "changed")


@given(st.integers(0, 999))
@settings(max_examples=40, deadline=None)
def test_a_deleted_record_is_missing_at_its_offset(index: int) -> None:
    values, seals = thousand()
    kept = [c for c in copies(values) if c.offset != index]
    renumbered = [RecordCopy(i, c.value) for i, c in enumerate(kept)]
    for copy in (kept, renumbered):
        report = verify_partition(0, seals, copy, KEYS, start=0, end=999)
        assert report.finding is not None
        assert (report.finding.offset, report.finding.reason) == (index, "missing")


@given(st.integers(0, 998))
@settings(max_examples=40, deadline=None)
def test_two_swapped_records_are_reordered_at_the_first(index: int) -> None:
    values, seals = thousand()
    records = copies(values)
    lines = list(records)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]  # whole records moved
    contents = list(records)
    contents[index] = RecordCopy(index, values[index + 1])  # values moved, labels kept
    contents[index + 1] = RecordCopy(index + 1, values[index])
    for copy in (lines, contents):
        report = verify_partition(0, seals, copy, KEYS)
        assert report.finding is not None
        assert (report.finding.offset, report.finding.reason) == (index, "reordered")


def test_a_forged_or_unknown_signature_is_found_at_the_seal() -> None:
    values, seals = thousand()
    forged = SealRecord(seals[2].checkpoint, bytes(64), seals[2].leaves)
    report = verify_partition(0, [seals[0], seals[1], forged, seals[3]], copies(values), KEYS)
    assert report.finding is not None
    assert (report.finding.offset, report.finding.reason) == (500, "bad_signature")
    stranger = KeyRing([SigningKey.generate().public()])
    report = verify_partition(0, seals, copies(values), stranger)
    assert report.finding is not None and report.finding.reason == "bad_signature"
    assert report.finding.offset == 0


def test_a_dropped_seal_breaks_the_chain_and_records_are_then_unsealed() -> None:
    values, seals = thousand()
    report = verify_partition(0, [seals[0], seals[2], seals[3]], copies(values), KEYS)
    assert report.finding is not None
    assert (report.finding.offset, report.finding.reason) == (250, "broken_chain")


def test_changed_leaves_in_a_seal_record_do_not_match_its_root() -> None:
    values, seals = thousand()
    leaves = (seals[1].leaves[1], seals[1].leaves[0], *seals[1].leaves[2:])
    shuffled = SealRecord(seals[1].checkpoint, seals[1].signature, leaves)
    report = verify_partition(0, [seals[0], shuffled], copies(values[:500]), KEYS)
    assert report.finding is not None
    assert (report.finding.offset, report.finding.reason) == (250, "bad_seal")


def test_records_past_the_last_seal_are_unsealed_not_failed() -> None:
    values, seals = thousand()
    extra = [*copies(values[:300]), RecordCopy(1000, value(1000))]
    report = verify_partition(0, seals[:1], extra, KEYS)
    assert report.ok and report.unsealed == 51 and report.records == 250


def test_an_inserted_record_is_unexpected() -> None:
    values, seals = thousand()
    records = copies(values)
    records.insert(10, RecordCopy(10, value(5000)))
    report = verify_partition(0, seals, records, KEYS)
    assert report.finding is not None and report.finding.offset == 10
    assert report.finding.reason in ("changed", "unexpected")


def test_a_proof_checks_offline_and_fails_for_a_modified_event() -> None:
    values, seals = thousand()
    seal = seals[1]
    proof = json.loads(json.dumps(build_proof(seal, 321, values[321])))  # through a file
    checkpoint = check_proof(proof, values[321], KEYS)
    assert checkpoint.sequence == 1 and proof["leaf_index"] == 71
    pretty = json.dumps(json.loads(values[321]), indent=2).encode()
    check_proof(proof, pretty, KEYS)  # re-serialized: same canonical form
    modified = values[321].replace(b"user-321", b"user-322")
    failures = {
        "event": (proof, modified, KEYS),
        "signature": (proof, values[321], KeyRing([SigningKey.generate().public()])),
        "audit_path": ({**proof, "audit_path": proof["audit_path"][:-1]}, values[321], KEYS),
        "offset": ({**proof, "offset": 322}, values[321], KEYS),
    }
    for field, (doc, event, keys) in failures.items():
        with pytest.raises(SealError) as raised:
            check_proof(doc, event, keys)
        assert raised.value.field == field
    with pytest.raises(SealError):
        build_proof(seal, 321, modified)


def test_an_export_is_read_as_events_tail_prints_it_and_verified() -> None:
    values, seals = thousand()
    blocks = [
        f"# {TOPIC}[0]@{offset} time=2026-12-01T00:00:00.000Z key=b't-1'\n"
        f'# headers {{"ce_id": "x"}}\n{v.decode()}\n'
        for offset, v in enumerate(values[:600])
    ]
    records = parse_export("".join(blocks))
    assert [(r.partition, r.offset) for r in records[:2]] == [(0, 0), (0, 1)]
    assert records[5].value == values[5] and records[5].line == 16
    triples = [(r.partition, r.offset, r.value) for r in records]
    (report,) = verify_copy(TOPIC, triples, seals, KEYS)
    assert report.ok and report.records == 600
    with pytest.raises(SealError) as raised:
        parse_export("garbage\n")
    assert raised.value.field == "line 1"
