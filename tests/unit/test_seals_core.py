"""The sealing core: canonical form, leaves, checkpoints, signatures, ranges (pure, no I/O)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_ingest.domain.canonical import canonical_json
from audit_ingest.domain.checkpoint import Checkpoint, SealRecord
from audit_ingest.domain.seal_errors import SealError
from audit_ingest.domain.seal_keys import KeyRing, SigningKey
from audit_ingest.domain.seal_leaf import GENESIS, chain_fold, leaf_hash, leaf_input
from audit_ingest.domain.sealing import PartitionSealer, skipped_ranges

KEY = SigningKey.generate()
TOPIC = "audit.events.v1"

json_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_canonical_form_is_rfc8785s(value: Any) -> None:
    raw = json.dumps(value).encode()
    found = canonical_json(raw)
    assert found is not None
    assert found[0] == rfc8785.dumps(json.loads(raw))


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_the_canonical_form_ignores_spelling(value: Any) -> None:
    compact = orjson.dumps(value)
    spaced = json.dumps(value, indent=2, sort_keys=True).encode()
    assert leaf_hash(compact) == leaf_hash(spaced)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',  # duplicate member
        b'{"a":NaN}',
        b'{"a":9007199254740992}',  # beyond 2**53 - 1
        b'{"a":1e400}',
        b'"\\ud800"',  # lone surrogate
        b"\xef\xbb\xbf{}",  # byte order mark
        b"\xff",
        b"not json",
    ],
)
def test_values_that_are_not_ijson_are_hashed_as_stored(raw: bytes) -> None:
    assert canonical_json(raw) is None
    assert leaf_input(raw) == b"\x00\x00" + b"\x00" + raw


def test_the_leaf_layout() -> None:
    value = b'{"event_id":"e-1","b":1,"a":true}'
    expected = b"\x00\x03e-1" + b"\x01" + b'{"a":true,"b":1,"event_id":"e-1"}'
    assert leaf_input(value) == expected
    assert leaf_hash(value) != leaf_hash(value.replace(b"e-1", b"e-2"))


def event(i: int, **extra: Any) -> bytes:
    return orjson.dumps({"event_id": f"0000-{i:06d}", "actor": {"id": f"u{i}"}, **extra})


def sealed(
    values: list[bytes], first: int = 0, sealer: PartitionSealer | None = None
) -> SealRecord:
    sealer = sealer or PartitionSealer(TOPIC, 0, None)
    for offset, value in enumerate(values, first):
        assert sealer.add(offset, value, 0.0)
    record = sealer.cut(KEY, "2026-12-01T00:00:00.000Z")
    sealer.commit()
    return record


def test_a_seal_round_trips_and_checks_out() -> None:
    record = sealed([event(i) for i in range(5)])
    decoded = SealRecord.decode(record.encode())
    assert decoded == record
    cp = decoded.checkpoint
    assert (cp.first_offset, cp.last_offset, cp.count, cp.sequence) == (0, 4, 5, 0)
    assert cp.chain_start == GENESIS and cp.prev_hash is None
    assert decoded.consistency() is None
    assert KeyRing([KEY.public()]).verify(cp.key_id, decoded.signature, cp.signed_bytes()) is None
    assert KeyRing([SigningKey.generate().public()]).verify(
        cp.key_id, decoded.signature, cp.signed_bytes()
    )


def test_ranges_tile_the_partition_and_chain() -> None:
    sealer = PartitionSealer(TOPIC, 2, None)
    one = sealed([event(i) for i in range(3)], 0, sealer)
    sealer.add(5, event(5), 0.0)  # offsets 3-4: transaction markers, say
    sealer.add(6, event(6), 0.0)
    two = sealer.cut(KEY, "2026-12-01T00:00:01.000Z")
    sealer.commit()
    assert two.checkpoint.first_offset == 3 and two.checkpoint.skipped == ((3, 4),)
    assert list(two.checkpoint.offsets()) == [5, 6]
    assert two.checkpoint.prev_hash == one.checkpoint.digest()
    assert two.checkpoint.chain_start == one.checkpoint.chain_head
    assert two.checkpoint.chain_head == chain_fold(GENESIS, [*one.leaves, *two.leaves])
    assert not sealer.add(6, event(6), 0.0)  # a redelivery is ignored


def test_rollback_keeps_the_range_pending() -> None:
    sealer = PartitionSealer(TOPIC, 0, None)
    for i in range(4):
        sealer.add(i, event(i), float(i))
    first = sealer.cut(KEY, "2026-12-01T00:00:00.000Z")
    sealer.rollback()
    again = sealer.cut(KEY, "2026-12-01T00:00:00.000Z")
    assert again == first
    sealer.commit()
    assert sealer.pending == 0 and sealer.base.next_offset == 4


def test_due_by_count_or_age() -> None:
    sealer = PartitionSealer(TOPIC, 0, None)
    assert not sealer.due(100.0, 3, 10.0)
    sealer.add(0, event(0), 100.0)
    assert not sealer.due(105.0, 3, 10.0)
    assert sealer.due(110.0, 3, 10.0)
    sealer.add(1, event(1), 101.0)
    sealer.add(2, event(2), 102.0)
    assert sealer.due(100.5, 3, 10.0)


def test_skipped_ranges() -> None:
    assert skipped_ranges(10, [10, 11, 12]) == ()
    assert skipped_ranges(10, [12, 13, 20]) == ((10, 11), (14, 19))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"count": 9}, "checkpoint.count"),
        ({"chain_head": "AB" * 32}, "checkpoint.chain_head"),
        ({"prev_hash": "00" * 32}, "checkpoint.prev_hash"),
        ({"skipped": [[3, 2]]}, "checkpoint.skipped"),
        ({"version": 2}, "checkpoint.version"),
        ({"partition": -1}, "checkpoint.partition"),
    ],
)
def test_malformed_checkpoints_name_the_member(change: dict[str, Any], field: str) -> None:
    body = sealed([event(i) for i in range(5)]).checkpoint.body()
    with pytest.raises(SealError) as raised:
        Checkpoint.from_body({**body, **change})
    assert raised.value.field == field


def test_the_public_keys_document_round_trips_and_checks_ids() -> None:
    ring = KeyRing([KEY.public(), SigningKey.generate().public()])
    document = ring.document()
    assert KeyRing.from_document(document).ids() == ring.ids() and len(ring) == 2
    document["keys"][0]["key_id"] = "ed25519:0000000000000000"
    with pytest.raises(SealError) as raised:
        KeyRing.from_document(document)
    assert raised.value.field == "keys[0].key_id"
    assert SigningKey.from_pem(KEY.pem()).key_id == KEY.key_id
    assert KeyRing.from_pem(KEY.pem(), field="k").ids() == [KEY.key_id]
