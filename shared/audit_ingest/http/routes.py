"""Which operation a method and path name, for each function."""

from __future__ import annotations

import enum

from audit_ingest.errors import MethodNotAllowed, NotFound


class Endpoint(enum.Enum):
    """The function being served: its own ingest path, plus the shared operational paths."""

    SINGLE = "/v1/events"
    BATCH = "/v1/events/batch"


class Operation(enum.Enum):
    INGEST = "ingest"
    HEALTH = "health"
    READY = "ready"
    METRICS = "metrics"


_OPERATIONAL = {
    "/health": Operation.HEALTH,
    "/ready": Operation.READY,
    "/metrics": Operation.METRICS,
}


def resolve(method: str, path: str, endpoint: Endpoint) -> Operation:
    """Map a request to an operation.

    `/` is the function's own ingest path too: Knative Eventing triggers deliver there.

    :raises NotFound: unknown path.
    :raises MethodNotAllowed: known path, wrong method.
    """
    path = path.rstrip("/") or "/"
    if path in _OPERATIONAL:
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(method, ("GET", "HEAD"))
        return _OPERATIONAL[path]
    if path in (endpoint.value, "/"):
        if method != "POST":
            raise MethodNotAllowed(method, ("POST",))
        return Operation.INGEST
    raise NotFound(f"No operation at {path}; this function serves POST {endpoint.value}.")
