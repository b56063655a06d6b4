"""Port plan for the stack, and checks on 127.0.0.1 ports."""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass

from devstack.errors import DevstackError, PortInUseError

HOST = "127.0.0.1"


@dataclass(frozen=True)
class StackPorts:
    """TCP ports on 127.0.0.1 used by the local servers."""

    postgres: int = 55432
    redis: int = 56379
    kafka: int = 59092
    kafka_controller: int = 59093

    @classmethod
    def free(cls) -> StackPorts:
        """Four distinct ports that are free right now (for tests and parallel stacks)."""
        return cls(*free_ports(4))


def free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free ports, holding all until all are chosen."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when a server could bind ``host:port`` now (SO_REUSEADDR, like the servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                return False
            raise DevstackError(f"cannot probe port {host}:{port}: {exc}") from exc
    return True


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_ports_free(ports: dict[str, int]) -> None:
    """Raise PortInUseError naming the service and port if any port is taken.

    ``ports`` maps a label such as ``"kafka controller"`` to its port.
    """
    for label, port in ports.items():
        if not port_is_free(port):
            raise PortInUseError(label, port)
