"""The small interfaces the service depends on; one real adapter each in `adapters/`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from audit_ingest.domain.idempotency import Claim, ClaimState
from audit_ingest.domain.keys import StoredKey
from audit_ingest.domain.ratelimit import RateDecision
from audit_ingest.domain.records import KafkaRecord


@dataclass(frozen=True, slots=True)
class Delivery:
    """The broker's answer for one record: acknowledged, or why not."""

    acknowledged: bool
    error: str | None = None
    # False when retrying the same record can never succeed (for example, too large).
    retriable: bool = True
    # True when the wait ended before the broker answered: the producer still holds the record
    # and may yet write it (until its own, longer, message timeout).
    pending: bool = False


# Called once, on the event loop, with the final delivery of every record that was still
# pending when `publish` returned (by the record's index in that call).
LateDeliveries = Callable[[dict[int, Delivery]], None]


class Publisher(Protocol):
    async def publish(
        self,
        records: Sequence[KafkaRecord],
        timeout: float,
        on_late: LateDeliveries | None = None,
    ) -> list[Delivery]:
        """Send records and wait, at most `timeout` seconds, for each one's acknowledgement.

        Never raises for a broker problem: a record not acknowledged in time is reported as a
        retriable failure (`pending` when the producer still holds it), so the caller can
        answer 503. The producer keeps trying a pending record, and `on_late` learns how it
        ended: an answer at the deadline must not be the end of the record, or the caller
        would let a retry write a second copy while the first may still land.
        """
        ...

    def publish_nowait(self, records: Sequence[KafkaRecord]) -> None:
        """Send best-effort records (dead letters of rejected events) without waiting."""
        ...

    async def ping(self, timeout: float) -> bool:
        """True when the broker answers a metadata request within `timeout`."""
        ...

    def close(self, timeout: float) -> int:
        """Flush and release; returns how many records were still undelivered."""
        ...


class KeyStore(Protocol):
    async def find(self, key_hash: str) -> StoredKey | None:
        """The key with this SHA-256 hex hash, or None. Raises `KeyStoreUnavailable`."""
        ...

    async def ping(self, timeout: float) -> bool: ...

    async def close(self) -> None: ...


class RateLimiter(Protocol):
    async def hit(self, key_id: str, limit: int) -> RateDecision:
        """Count one request of this key and decide it; never raises for a store failure."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class IdempotencyStore(Protocol):
    async def claim(self, tenant_id: str, claims: Sequence[Claim]) -> list[ClaimState]:
        """Claim each key for a new attempt; raises `Unavailable` when the store is down."""
        ...

    async def settle(
        self,
        tenant_id: str,
        done: Sequence[tuple[Claim, str]],
        failed: Sequence[Claim],
        held: Sequence[Claim] = (),
    ) -> None:
        """Record attempts' results: done (with received_at) or failed (retry allowed); keep
        `held` claims pending for as long as the producer may still write their records."""
        ...

    async def lookup(self, tenant_id: str, key: str) -> ClaimState | None:
        """What is stored for `key` (read only): `done` or `pending`, else None.

        Raises `Unavailable` when the store is down."""
        ...

    async def close(self) -> None: ...
