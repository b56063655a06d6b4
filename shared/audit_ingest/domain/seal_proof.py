"""Inclusion proofs: one record's leaf, its Merkle path, and the signed checkpoint.

Document (docs/integrity.md, "Inclusion proof"):
    {"type": "audit-ingest.inclusion-proof", "version": 1, "topic", "partition", "offset",
     "event_id", "leaf_index", "tree_size", "leaf_hash", "audit_path": [hex, ...],
     "checkpoint": <body>, "signature": hex}

`check_proof` needs only the proof, the record's value and the public keys: no Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit_ingest.domain import merkle
from audit_ingest.domain.checkpoint import Checkpoint, SealRecord
from audit_ingest.domain.seal_errors import SealError
from audit_ingest.domain.seal_keys import KeyRing
from audit_ingest.domain.seal_leaf import event_id_of, leaf_hash

PROOF_TYPE = "audit-ingest.inclusion-proof"


def build_proof(seal: SealRecord, offset: int, value: bytes) -> dict[str, Any]:
    """The proof that the record at `offset` (holding `value`) is in `seal`'s range."""
    checkpoint = seal.checkpoint
    offsets = list(checkpoint.offsets())
    if offset not in offsets:
        raise SealError("offset", f"{offset} is not a record of seal {checkpoint.sequence}")
    index = offsets.index(offset)
    leaf = leaf_hash(value)
    if leaf != seal.leaves[index]:
        raise SealError("value", f"the record at offset {offset} differs from its sealed leaf")
    return {
        "type": PROOF_TYPE,
        "version": 1,
        "topic": checkpoint.topic,
        "partition": checkpoint.partition,
        "offset": offset,
        "event_id": event_id_of(value),
        "leaf_index": index,
        "tree_size": checkpoint.count,
        "leaf_hash": leaf.hex(),
        "audit_path": [node.hex() for node in merkle.inclusion_path(seal.leaves, index)],
        "checkpoint": checkpoint.body(),
        "signature": seal.signature.hex(),
    }


def check_proof(proof: Any, value: bytes, keys: KeyRing) -> Checkpoint:
    """Raise SealError (field, reason) unless `proof` shows `value` sealed under a trusted
    key; returns the checkpoint it is sealed in."""
    if not isinstance(proof, Mapping) or proof.get("type") != PROOF_TYPE:
        raise SealError("type", f"not an inclusion proof (type {PROOF_TYPE!r})")
    checkpoint = Checkpoint.from_body(proof.get("checkpoint"))
    try:
        signature = bytes.fromhex(str(proof.get("signature")))
        path = [bytes.fromhex(str(node)) for node in proof.get("audit_path") or []]
    except ValueError:
        raise SealError("signature/audit_path", "must be hex") from None
    problem = keys.verify(checkpoint.key_id, signature, checkpoint.signed_bytes())
    if problem is not None:
        raise SealError("signature", problem)
    index, size, offset = proof.get("leaf_index"), proof.get("tree_size"), proof.get("offset")
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (index, size, offset)):
        raise SealError("leaf_index", "leaf_index, tree_size and offset must be integers")
    assert isinstance(index, int)
    assert isinstance(size, int)
    assert isinstance(offset, int)
    if size != checkpoint.count:
        raise SealError("tree_size", f"the checkpoint covers {checkpoint.count} records")
    if (proof.get("topic"), proof.get("partition")) != (checkpoint.topic, checkpoint.partition):
        raise SealError("partition", "topic and partition differ from the checkpoint's")
    offsets = list(checkpoint.offsets())
    if not 0 <= index < size or offsets[index] != offset:
        raise SealError("offset", f"leaf {index} of the checkpoint is not offset {offset}")
    leaf = leaf_hash(value)
    if leaf.hex() != proof.get("leaf_hash"):
        raise SealError("event", "the event's leaf differs from the proof's: it was changed")
    if proof.get("event_id") != event_id_of(value):
        raise SealError("event_id", "the event's event_id differs from the proof's")
    if any(len(node) != 32 for node in path) or not merkle.verify_inclusion(
        leaf, index, size, path, checkpoint.merkle_root
    ):
        raise SealError("audit_path", "does not lead from the leaf to the checkpoint's root")
    return checkpoint
