"""LocalStack: PostgreSQL, Redis and Kafka for development and tests, without Docker."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from devstack.envfile import write_env_file
from devstack.errors import DevstackError
from devstack.kafka import KafkaService
from devstack.ports import StackPorts
from devstack.postgres import PostgresService
from devstack.redis_server import RedisService
from devstack.service import Service

log = logging.getLogger(__name__)


class LocalStack:
    """Starts (or reuses) local servers under ``root``; see ``devstack/README.md``.

    A service whose variable (DATABASE_URL, REDIS_URL, KAFKA_BOOTSTRAP_SERVERS)
    is set in the environment is not started: the stack waits for that server.
    """

    def __init__(
        self,
        root: Path = Path(".dev"),
        ports: StackPorts | None = None,
        *,
        kafka_libs: Path | None = None,
    ) -> None:
        self.root = root.resolve()
        self.ports = ports or StackPorts()
        self.postgres = PostgresService(self.root, self.ports.postgres)
        self.redis = RedisService(self.root, self.ports.redis)
        self.kafka = KafkaService(
            self.root, self.ports.kafka, self.ports.kafka_controller, libs_dir=kafka_libs
        )
        self.timings: dict[str, float] = {}

    @property
    def services(self) -> tuple[Service, ...]:
        return (self.postgres, self.redis, self.kafka)

    @property
    def env(self) -> dict[str, str]:
        """Connection settings for the app: external values win over local ones."""
        return {service.env_var: service.url for service in self.services}

    def start(self) -> None:
        """Start every service in parallel and wait until all answer.

        Idempotent. If any service fails, the ones this call started are
        stopped again and its error is raised (a DevstackError naming every
        failure when several failed).
        """
        began = time.monotonic()
        running_before = {s.name for s in self.services if s.is_running()}
        with ThreadPoolExecutor(
            max_workers=len(self.services), thread_name_prefix="devstack"
        ) as pool:
            futures = {s.name: pool.submit(s.start) for s in self.services}
            errors: dict[str, BaseException] = {}
            for name, future in futures.items():
                try:
                    future.result()
                except BaseException as exc:  # collected, re-raised below
                    errors[name] = exc
        if errors:
            for service in self.services:
                if service.name not in running_before:
                    self._stop_quietly(service)
            interrupt = next((e for e in errors.values() if not isinstance(e, Exception)), None)
            if interrupt is not None:
                raise interrupt
            if len(errors) == 1:
                raise next(iter(errors.values()))
            summary = "; ".join(f"{name}: {exc}" for name, exc in errors.items())
            raise DevstackError(f"local stack failed to start: {summary}") from next(
                iter(errors.values())
            )
        for service in self.services:
            if service.last_start_seconds is not None:
                self.timings[service.name] = service.last_start_seconds
        self.timings["total"] = time.monotonic() - began
        log.info("stack ready in %.1fs", self.timings["total"])

    def write_env_file(self, path: Path) -> Path:
        return write_env_file(path, self.env)

    def stop(self) -> None:
        """Stop what this object started or adopted (Kafka first), keeping data on disk."""
        failures = [
            f"{s.name}: {e}"
            for s in reversed(self.services)
            if (e := self._stop_quietly(s)) is not None
        ]
        if failures:
            raise DevstackError("could not stop: " + "; ".join(failures))

    def stop_leftovers(self) -> list[str]:
        """Stop servers recorded in ``root``'s pid files, e.g. after a crash. Returns names."""
        return [s.name for s in reversed(self.services) if s.stop_leftover()]

    @staticmethod
    def _stop_quietly(service: Service) -> DevstackError | None:
        try:
            service.stop()
        except DevstackError as exc:
            log.error("%s: %s", service.name, exc)
            return exc
        return None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
