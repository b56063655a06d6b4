"""Which operation a method and path name, for each function."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from audit_ingest.errors import MethodNotAllowed, NotFound


class Endpoint(enum.Enum):
    """The function being served: its own ingest path, plus the shared operational paths."""

    SINGLE = "/v1/events"
    BATCH = "/v1/events/batch"


class Operation(enum.Enum):
    INGEST = "ingest"
    AUTHORIZE = "authorize"
    HEALTH = "health"
    READY = "ready"
    METRICS = "metrics"


OPERATIONAL: Final[Mapping[str, Operation]] = MappingProxyType(
    {
        "/health": Operation.HEALTH,
        "/ready": Operation.READY,
        "/metrics": Operation.METRICS,
    }
)
"""The paths every function answers besides its own (probes and scrapes, GET or HEAD only)."""


def resolve(method: str, path: str, endpoint: Endpoint) -> Operation:
    """Map a request to an ingest function's operation.

    `/` is the function's own ingest path too: Knative Eventing triggers deliver there.

    :raises NotFound: unknown path.
    :raises MethodNotAllowed: known path, wrong method.
    """
    path = path.rstrip("/") or "/"
    operational = _operational(method, path)
    if operational is not None:
        return operational
    if path in (endpoint.value, "/"):
        if method != "POST":
            raise MethodNotAllowed(method, ("POST",))
        return Operation.INGEST
    raise NotFound(f"No operation at {path}; this function serves POST {endpoint.value}.")


def resolve_authorize(method: str, path: str) -> Operation:
    """Map a request to the `authorize` function's operation.

    Every path but the operational ones, with any method, is a check: APISIX's forward-auth
    calls whatever `uri` its route names (with GET, `request_method`'s default).

    :raises MethodNotAllowed: an operational path, wrong method.
    """
    return _operational(method, path.rstrip("/") or "/") or Operation.AUTHORIZE


def _operational(method: str, path: str) -> Operation | None:
    operation = OPERATIONAL.get(path)
    if operation is not None and method not in ("GET", "HEAD"):
        raise MethodNotAllowed(method, ("GET", "HEAD"))
    return operation
