"""Sample values the unit tests share: the seed's event, a stored key, a principal, a service.

Test modules import these from here, never from one another.
"""

from __future__ import annotations

import itertools
from typing import Any

from audit_ingest.domain.enrichment import Processing
from audit_ingest.domain.keys import StoredKey
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.pipeline import Rules
from audit_ingest.domain.principal import Principal
from audit_ingest.ports import IdempotencyStore, Publisher
from audit_ingest.service import IngestService

PRINCIPAL = Principal(tenant_id="t-1", api_key_id="key-1", scopes=("events:write",), rate_limit=100)


def seed_event(**changes: Any) -> dict[str, Any]:
    """The seed's example event (E2.S8)."""
    event: dict[str, Any] = {
        "actor": {"id": "user-123", "type": "user", "email": "user@example.com"},
        "action": {"name": "user.created"},
        "resource": {"type": "user", "id": "user-456"},
        "timestamp": "2024-12-05T10:00:00Z",
        "result": {"success": True},
    }
    event.update(changes)
    return event


def stored(**changes: object) -> StoredKey:
    """A stored API key: active, tenant t1, scope events:write, 10 requests a minute."""
    base: dict[str, object] = dict(
        id="k1",
        tenant_id="t1",
        name=None,
        scopes=("events:write",),
        rate_limit=10,
        is_active=True,
        expires_at=None,
    )
    base.update(changes)
    return StoredKey(**base)  # type: ignore[arg-type]


def make_service(
    publisher: Publisher,
    *,
    limits: Limits | None = None,
    idempotency: IdempotencyStore | None = None,
    ack_timeout: float = 3.0,
    topic: str = "audit.events.v1",
    dlq_topic: str = "audit.events.dlq.v1",
    compiled: bool = True,
) -> IngestService:
    """The real service over the given ports, with ids `id-1`, `id-2`, ... in call order."""
    counter = itertools.count(1)
    return IngestService(
        publisher,
        rules=Rules(
            limits=limits or Limits(),
            processing=Processing("n", "f", "r", "v"),
            topic=topic,
            compiled=compiled,
        ),
        dlq_topic=dlq_topic,
        ack_timeout=ack_timeout,
        new_event_id=lambda: f"id-{next(counter)}",
        idempotency=idempotency,
    )
