"""Idempotency: which key names a retry, and what a stored answer looks like (pure).

A retry is recognised by, in order: the event's `idempotency_key` (batch) or the request's
`Idempotency-Key` header (single), else the CloudEvent's `source` + `id` (the CloudEvents
spec's own identity of an occurrence). Keys are scoped to the tenant. A fingerprint of the
event's content tells a true retry from a key reused for a different event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from audit_ingest.domain.envelope import Envelope

RETENTION_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 256


def idempotency_key(envelope: Envelope, explicit: str | None) -> str | None:
    """The retry identity of an event, or None when the client gave none."""
    if explicit:
        return f"key:{explicit}"
    if envelope.origin is not None:
        return f"ce:{envelope.origin.source}\x00{envelope.origin.id}"
    return None


def first_uses(keys: Sequence[str | None]) -> list[int | None]:
    """For each position, where the same key was first used in `keys` (None: first or no key).

    Two events of one request with one key are settled inside the request: the later copy
    follows the first, instead of waiting on a claim that its own request holds.
    """
    first: dict[str, int] = {}
    out: list[int | None] = []
    for position, key in enumerate(keys):
        if key is None:
            out.append(None)
            continue
        earlier = first.setdefault(key, position)
        out.append(None if earlier == position else earlier)
    return out


def fingerprint(payload: object) -> str:
    """A digest of the event as sent, independent of key order and whitespace."""
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def storage_key(tenant_id: str, key: str) -> str:
    """The Redis key: hashed (bounded length, no client text), one hash slot per tenant."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"audit-ingest:idem:{{{tenant_id}}}:{digest}"


@dataclass(frozen=True, slots=True)
class Claim:
    """An attempt to own `key` for a new event `event_id` with content `fingerprint`."""

    key: str
    event_id: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ClaimState:
    """What the store answered for one claim.

    - `claimed`: this attempt owns the key; publish under `event_id` (a failed earlier
      attempt's id is reused, so duplicates of an ambiguous write share one event_id);
    - `done`: stored already, as `event_id` at `received_at`;
    - `pending`: another attempt holds the key right now.
    """

    status: Literal["claimed", "done", "pending"]
    event_id: str
    fingerprint: str
    received_at: str | None = None
