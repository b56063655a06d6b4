"""Exceptions raised by devstack; every failure surfaces as a DevstackError."""

from __future__ import annotations


class DevstackError(RuntimeError):
    """Base class: a local service could not be installed, started or stopped."""


class ToolMissingError(DevstackError):
    """A required program (initdb, redis-server, java, mvn, ...) is absent and not installable."""


class PortInUseError(DevstackError):
    """A port the stack wants to listen on is held by some other process."""

    def __init__(self, service: str, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(
            f"{service}: port {host}:{port} is already in use by another process "
            f"(not one started by devstack); stop that process or choose another port"
        )
        self.service = service
        self.port = port


class ServiceStartError(DevstackError):
    """A server process exited early or did not become ready in time."""
