"""A record's leaf: the hash that stands for it in the chain and in the Merkle tree.

Byte layout (docs/integrity.md, "Leaf"):

    leaf_input = u16be(len(E)) || E || K || C
        E  the value's top-level "event_id" as UTF-8 (empty when absent, not a string, or
           longer than 65535 bytes)
        K  0x01: C is the RFC 8785 canonical form of the value (it is I-JSON);
           0x00: C is the value's bytes as stored (it is not, so it has no canonical form)
    leaf_hash  = SHA-256(0x00 || leaf_input)              (RFC 9162 leaf hash)
    chain_n    = SHA-256(0x02 || chain_(n-1) || leaf_hash_n), chain before a partition's
                 first sealed record = 32 zero bytes

The canonical form, not the stored bytes: a copy re-serialized by a warehouse (key order,
whitespace, number spelling) still verifies, while any change of meaning does not. The
event_id is length-prefixed so no pair (E, C) can be re-split into another.
"""

from __future__ import annotations

import hashlib
import struct

from audit_ingest.domain.canonical import canonical_json

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
CHAIN_PREFIX = b"\x02"
GENESIS = bytes(32)
CANONICAL = b"\x01"
RAW = b"\x00"


def leaf_input(value: bytes) -> bytes:
    """The leaf input of a stored value (layout above)."""
    found = canonical_json(value)
    if found is None:
        return struct.pack(">H", 0) + RAW + value
    canonical, parsed = found
    event_id = parsed.get("event_id") if isinstance(parsed, dict) else None
    encoded = event_id.encode("utf-8", "surrogatepass") if isinstance(event_id, str) else b""
    if len(encoded) > 0xFFFF:
        encoded = b""
    return struct.pack(">H", len(encoded)) + encoded + CANONICAL + canonical


def leaf_hash(value: bytes) -> bytes:
    """SHA-256(0x00 || leaf_input(value)): the record's leaf."""
    return hashlib.sha256(LEAF_PREFIX + leaf_input(value)).digest()


def chain_step(head: bytes, leaf: bytes) -> bytes:
    """The chain after one more leaf."""
    return hashlib.sha256(CHAIN_PREFIX + head + leaf).digest()


def chain_fold(head: bytes, leaves: list[bytes] | tuple[bytes, ...]) -> bytes:
    """The chain after `leaves`, in order."""
    for leaf in leaves:
        head = hashlib.sha256(CHAIN_PREFIX + head + leaf).digest()
    return head


def event_id_of(value: bytes) -> str | None:
    """The event_id a leaf commits to (None when it commits to none)."""
    found = canonical_json(value)
    if found is None or not isinstance(found[1], dict):
        return None
    event_id = found[1].get("event_id")
    return event_id if isinstance(event_id, str) and event_id else None
