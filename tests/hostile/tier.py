"""What the hostile tier's conftest and tests share: its functions, topics and presented keys.

Every API key a hostile test issues or presents is recorded here (`record_issued`,
`record_presented`), for the secret-hygiene test to search for (`presented_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass

from audit_ingest.adapters.key_admin import IssuedKey
from tests.functions import FunctionProcess

HOSTILE_TOPIC = "audit.events.hostile.v1"
HOSTILE_DLQ_TOPIC = "audit.events.hostile.dlq.v1"
# Every hostile request must be answered within this bound (seconds), whatever its body.
ANSWER_WITHIN = 5.0

# Keys issued by hostile tests in this session, and keys presented that were never stored
# (unknown, malformed): what the secret-hygiene test searches for.
_ISSUED: list[IssuedKey] = []
_PRESENTED: set[str] = set()


def record_issued(issued: IssuedKey) -> None:
    _ISSUED.append(issued)


def record_presented(key: str) -> None:
    _PRESENTED.add(key)


def presented_keys() -> set[str]:
    return _PRESENTED | {issued.secret for issued in _ISSUED}


@dataclass(frozen=True)
class HostileFunctions:
    single: FunctionProcess
    batch: FunctionProcess
    topic: str
    dlq_topic: str

    @property
    def single_url(self) -> str:
        return self.single.url

    @property
    def batch_url(self) -> str:
        return self.batch.url

    def url_for(self, path: str) -> str:
        """The base URL of the function serving `path` (as APISIX routes it)."""
        return self.batch.url if path.rstrip("/").endswith("/batch") else self.single.url
