"""A checkpoint (the signed statement about one range of a partition) and the seal record
that carries it on the seals topic.

Checkpoint body (signed; JSON members, docs/integrity.md "Checkpoint"):
    type "audit-ingest.checkpoint", version 1, topic, partition, sequence (0, 1, ... per
    partition), first_offset, last_offset, count, skipped ([[from, to], ...]: offsets of the
    range that hold no record, such as transaction markers), chain_start, chain_head,
    merkle_root, prev_hash (null for sequence 0), sealed_at (RFC 3339, ms, UTC), key_id.
    Hashes are lowercase hex.
    checkpoint hash = SHA-256(JCS(body)); signature = Ed25519(JCS(body)).

Seal record (the Kafka value): {"checkpoint": body, "signature": hex, "leaves": base64 of
the range's leaf hashes, 32 bytes each, in offset order}. The leaves are not signed: the
signed Merkle root binds them, and they let a verifier name the exact offset that differs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import rfc8785

from audit_ingest.domain import merkle
from audit_ingest.domain.seal_errors import SealError
from audit_ingest.domain.seal_leaf import chain_fold

CHECKPOINT_TYPE = "audit-ingest.checkpoint"
_INTS = ("partition", "sequence", "first_offset", "last_offset", "count")
_HASHES = ("chain_start", "chain_head", "merkle_root")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    topic: str
    partition: int
    sequence: int
    first_offset: int
    last_offset: int
    count: int
    skipped: tuple[tuple[int, int], ...]
    chain_start: bytes
    chain_head: bytes
    merkle_root: bytes
    prev_hash: bytes | None
    sealed_at: str
    key_id: str

    def body(self) -> dict[str, Any]:
        return {
            "type": CHECKPOINT_TYPE,
            "version": 1,
            "topic": self.topic,
            "partition": self.partition,
            "sequence": self.sequence,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "count": self.count,
            "skipped": [[lo, hi] for lo, hi in self.skipped],
            "chain_start": self.chain_start.hex(),
            "chain_head": self.chain_head.hex(),
            "merkle_root": self.merkle_root.hex(),
            "prev_hash": None if self.prev_hash is None else self.prev_hash.hex(),
            "sealed_at": self.sealed_at,
            "key_id": self.key_id,
        }

    def signed_bytes(self) -> bytes:
        """JCS of the body: what is signed and hashed."""
        return rfc8785.dumps(self.body())

    def digest(self) -> bytes:
        """The checkpoint hash the next checkpoint names as prev_hash."""
        return hashlib.sha256(self.signed_bytes()).digest()

    def offsets(self) -> Iterator[int]:
        """The offsets of the range's records, in order (skipped ones left out)."""
        at = self.first_offset
        for lo, hi in self.skipped:
            yield from range(at, lo)
            at = hi + 1
        yield from range(at, self.last_offset + 1)

    def covers(self, offset: int) -> bool:
        return self.first_offset <= offset <= self.last_offset

    @classmethod
    def from_body(cls, body: Any) -> Checkpoint:
        """Parse and check the shape of a body; raises SealError naming the member."""
        if not isinstance(body, Mapping) or body.get("type") != CHECKPOINT_TYPE:
            raise SealError("checkpoint.type", f"must be {CHECKPOINT_TYPE!r}")
        if body.get("version") != 1:
            raise SealError("checkpoint.version", "only version 1 is known")
        for name in _INTS:
            value = body.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SealError(f"checkpoint.{name}", "must be a non-negative integer")
        for name in ("topic", "sealed_at", "key_id"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise SealError(f"checkpoint.{name}", "must be a non-empty string")
        prev = body.get("prev_hash")
        checkpoint = cls(
            topic=body["topic"],
            partition=body["partition"],
            sequence=body["sequence"],
            first_offset=body["first_offset"],
            last_offset=body["last_offset"],
            count=body["count"],
            skipped=_skipped(body.get("skipped")),
            chain_start=_hash(body, "chain_start"),
            chain_head=_hash(body, "chain_head"),
            merkle_root=_hash(body, "merkle_root"),
            prev_hash=None if prev is None else _hash(body, "prev_hash"),
            sealed_at=body["sealed_at"],
            key_id=body["key_id"],
        )
        checkpoint._check_range()
        return checkpoint

    def _check_range(self) -> None:
        if self.last_offset < self.first_offset or self.count < 1:
            raise SealError("checkpoint.count", "a checkpoint covers at least one record")
        at = self.first_offset
        for lo, hi in self.skipped:
            if not at <= lo <= hi < self.last_offset:
                raise SealError("checkpoint.skipped", "ranges must be ordered, inside the range")
            at = hi + 2  # two skipped ranges never touch: they would be one
        held = (
            self.last_offset - self.first_offset + 1 - sum(hi - lo + 1 for lo, hi in self.skipped)
        )
        if held != self.count:
            raise SealError("checkpoint.count", f"the range holds {held} records, not {self.count}")
        if (self.prev_hash is None) != (self.sequence == 0):
            raise SealError("checkpoint.prev_hash", "null exactly for sequence 0")


def _hash(body: Mapping[str, Any], name: str) -> bytes:
    value = body.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32 or value != raw.hex():
        raise SealError(f"checkpoint.{name}", "must be 64 lowercase hex digits")
    return raw


def _skipped(value: Any) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list):
        raise SealError("checkpoint.skipped", "must be a list of [from, to] pairs")
    pairs: list[tuple[int, int]] = []
    for item in value:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in item)
        ):
            raise SealError("checkpoint.skipped", "must be a list of [from, to] pairs")
        pairs.append((item[0], item[1]))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class SealRecord:
    """A signed checkpoint with the leaves of its range, as stored on the seals topic."""

    checkpoint: Checkpoint
    signature: bytes
    leaves: tuple[bytes, ...]

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "checkpoint": self.checkpoint.body(),
                "signature": self.signature.hex(),
                "leaves": base64.b64encode(b"".join(self.leaves)).decode(),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> SealRecord:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise SealError("seal", "not JSON") from None
        if not isinstance(document, dict):
            raise SealError("seal", "must be a JSON object")
        checkpoint = Checkpoint.from_body(document.get("checkpoint"))
        try:
            signature = bytes.fromhex(str(document.get("signature")))
            blob = base64.b64decode(str(document.get("leaves")), validate=True)
        except (ValueError, binascii.Error):
            raise SealError("signature/leaves", "must be hex / base64") from None
        if len(blob) != 32 * checkpoint.count:
            raise SealError("leaves", f"must hold {checkpoint.count} hashes of 32 bytes")
        leaves = tuple(blob[i : i + 32] for i in range(0, len(blob), 32))
        return cls(checkpoint, signature, leaves)

    def consistency(self) -> str | None:
        """None when the leaves give the signed root and chain head; else what differs."""
        if merkle.root(self.leaves) != self.checkpoint.merkle_root:
            return "its leaves do not give its merkle_root"
        if chain_fold(self.checkpoint.chain_start, self.leaves) != self.checkpoint.chain_head:
            return "its leaves do not lead from chain_start to chain_head"
        return None
