"""devstack: a real local PostgreSQL, Redis and Kafka for `make run` and tests, no Docker.

Development tooling only; not part of the audit-ingest wheel.
"""

from devstack.errors import (
    DevstackError,
    PortInUseError,
    ServiceStartError,
    ToolMissingError,
)
from devstack.ports import StackPorts
from devstack.stack import LocalStack

__all__ = [
    "DevstackError",
    "LocalStack",
    "PortInUseError",
    "ServiceStartError",
    "StackPorts",
    "ToolMissingError",
]
