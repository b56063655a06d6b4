"""Event ids: UUIDv7 (RFC 9562 §5.7), strictly increasing per process, never ahead of the clock.

`uuid_utils.uuid7()` (uuid-utils, bindings to Rust's `uuid` crate) keeps the ids of one
millisecond in order with a 42-bit counter (the 12 bits of `rand_a` and the top 30 of
`rand_b`; RFC 9562 §6.2 method 1), seeded at random each millisecond and incremented per id,
and advances the embedded time only if that counter overflows (2^41 ids in a millisecond):
the time in an id is the clock's, at any rate of generation.
`uuid6.uuid7()`, used before, instead added 1 ms to the embedded time whenever the clock had
not moved, so ids ran seconds ahead under load (docs/design-notes.md has the figures).
The property test in tests/unit/test_ids.py holds both promises over a million ids.
"""

from __future__ import annotations

from uuid_utils import uuid7


def new_event_id() -> str:
    """A new UUIDv7, in canonical text form."""
    return str(uuid7())
