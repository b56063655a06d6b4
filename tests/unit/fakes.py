"""Fakes of the ports, for unit tests only."""

from __future__ import annotations

from collections.abc import Sequence

from audit_ingest.domain.idempotency import Claim, ClaimState
from audit_ingest.domain.keys import StoredKey
from audit_ingest.domain.ratelimit import RateDecision, decide
from audit_ingest.domain.records import KafkaRecord
from audit_ingest.errors import KeyStoreUnavailable, Unavailable
from audit_ingest.ports import Delivery, LateDeliveries


class FakePublisher:
    def __init__(self, deliveries: list[Delivery] | None = None) -> None:
        self.published: list[KafkaRecord] = []
        self.dead_letters: list[KafkaRecord] = []
        self.deliveries = deliveries
        self.timeouts: list[float] = []
        self.on_late: LateDeliveries | None = None  # the last call's

    async def publish(
        self,
        records: Sequence[KafkaRecord],
        timeout: float,
        on_late: LateDeliveries | None = None,
    ) -> list[Delivery]:
        self.timeouts.append(timeout)
        self.on_late = on_late
        if self.deliveries is not None:
            answers = self.deliveries[: len(records)]
            self.published.extend(
                r for r, d in zip(records, answers, strict=False) if d.acknowledged
            )
            return answers
        self.published.extend(records)
        return [Delivery(True) for _ in records]

    def publish_nowait(self, records: Sequence[KafkaRecord]) -> None:
        self.dead_letters.extend(records)

    async def ping(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> int:
        return 0


class FakeKeyStore:
    def __init__(self, keys: dict[str, StoredKey] | None = None) -> None:
        self.keys = keys or {}
        self.down = False
        self.calls = 0

    async def find(self, key_hash: str) -> StoredKey | None:
        self.calls += 1
        if self.down:
            raise KeyStoreUnavailable("down")
        return self.keys.get(key_hash)

    async def ping(self, timeout: float) -> bool:
        return not self.down

    async def close(self) -> None:
        return None


class FakeLimiter:
    """Counts per key in memory, one window; `degraded` mimics a Redis outage."""

    def __init__(self, reset_seconds: int = 42) -> None:
        self.counts: dict[str, int] = {}
        self.reset_seconds = reset_seconds
        self.degraded = False

    async def hit(self, key_id: str, limit: int) -> RateDecision:
        self.counts[key_id] = self.counts.get(key_id, 0) + 1
        return decide(self.counts[key_id], limit, self.reset_seconds, degraded=self.degraded)

    async def ping(self) -> bool:
        return not self.degraded

    async def close(self) -> None:
        return None


class FakeIdempotencyStore:
    """The Redis store's state machine in a dict (pending / done / retry), no expiry."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[str, ...]] = {}
        self.held: list[tuple[str, str]] = []
        self.down = False

    async def claim(self, tenant_id: str, claims: Sequence[Claim]) -> list[ClaimState]:
        if self.down:
            raise Unavailable("down")
        states = []
        for claim in claims:
            key = (tenant_id, claim.key)
            current = self.records.get(key)
            event_id = claim.event_id
            if current is not None and current[0] == "retry":
                if current[2] == claim.fingerprint:
                    event_id = current[1]
                current = None
            if current is None:
                self.records[key] = ("pending", event_id, claim.fingerprint)
                states.append(ClaimState("claimed", event_id, claim.fingerprint))
            elif current[0] == "pending":
                states.append(ClaimState("pending", current[1], current[2]))
            else:
                states.append(ClaimState("done", current[1], current[2], current[3]))
        return states

    async def settle(
        self,
        tenant_id: str,
        done: Sequence[tuple[Claim, str]],
        failed: Sequence[Claim],
        held: Sequence[Claim] = (),
    ) -> None:
        if self.down:
            raise Unavailable("down")
        self.held.extend((tenant_id, claim.key) for claim in held)  # stay pending, no expiry
        for claim, received_at in done:
            self.records[(tenant_id, claim.key)] = (
                "done",
                claim.event_id,
                claim.fingerprint,
                received_at,
            )
        for claim in failed:
            self.records[(tenant_id, claim.key)] = ("retry", claim.event_id, claim.fingerprint)

    async def lookup(self, tenant_id: str, key: str) -> ClaimState | None:
        if self.down:
            raise Unavailable("down")
        current = self.records.get((tenant_id, key))
        if current is None or current[0] == "retry":
            return None
        received_at = current[3] if current[0] == "done" else None
        return ClaimState(current[0], current[1], current[2], received_at)  # type: ignore[arg-type]

    async def close(self) -> None:
        return None
