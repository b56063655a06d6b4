"""The life cycle shared by every local server: reuse, install, start, wait, stop."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from devstack.accounts import RunAs
from devstack.errors import ServiceStartError
from devstack.ports import ensure_ports_free, port_accepts
from devstack.process import ManagedProcess
from devstack.wait import wait_until

log = logging.getLogger(__name__)

ADOPT_TIMEOUT_S = 15.0


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and errors)."""
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", url)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class Service(ABC):
    """One server. Subclasses say how to prepare, run and probe it.

    ``start()`` uses the external server named by ``env_var`` when that
    variable is set; otherwise it reuses a live leftover recorded in the pid
    file, or starts a new process, and waits until ``probe`` succeeds.
    """

    name: ClassVar[str]
    env_var: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    stop_timeout: ClassVar[float] = 30.0
    retry_on: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, root: Path, *, ready_timeout: float) -> None:
        self.root = root.resolve()
        self.ready_timeout = ready_timeout
        self.process: ManagedProcess | None = None
        self.last_start_seconds: float | None = None
        self.last_launch_to_ready_seconds: float | None = None

    # --- what subclasses provide -------------------------------------------
    @abstractmethod
    def local_url(self) -> str: ...

    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Label -> port this server listens on, e.g. {"kafka controller": 59093}."""

    @abstractmethod
    def prepare(self) -> None:
        """Install binaries, create/initialise data directories (first start only)."""

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def probe(self, url: str) -> bool:
        """One readiness check; may raise one of ``retry_on``."""

    @property
    @abstractmethod
    def log_file(self) -> Path: ...

    def run_as(self) -> RunAs | None:
        return None

    def after_ready(self) -> None:
        """Post-start setup on a local server (e.g. create the database); default none."""
        return None

    # --- common behaviour ----------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.root / f"{self.name}.pid"

    @property
    @abstractmethod
    def marker(self) -> str:
        """A string in our server's command line: tells our leftovers from strangers."""

    @property
    def external_url(self) -> str | None:
        return os.environ.get(self.env_var) or None

    @property
    def url(self) -> str:
        return self.external_url or self.local_url()

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def start(self) -> None:
        """Idempotent: returns once the server answers, starting it only if needed."""
        started = time.monotonic()
        external = self.external_url
        if external is not None:
            log.info("%s: using external server from $%s", self.name, self.env_var)
            self._wait_ready(external, None, self.ready_timeout)
        elif not self.is_running():
            self.root.mkdir(parents=True, exist_ok=True)
            with (self.root / f".{self.name}.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one starter per root at a time
                if not self._adopt_leftover():
                    self._start_new()
        self.last_start_seconds = time.monotonic() - started

    def _adopt_leftover(self) -> bool:
        leftover = ManagedProcess.from_pid_file(
            self.name, self.pid_file, self.marker, self.stop_signal
        )
        if leftover is None:
            return False
        if all(port_accepts(port) for port in self.ports().values()):
            try:
                self._wait_ready(self.local_url(), leftover, ADOPT_TIMEOUT_S)
                self.after_ready()
            except ServiceStartError as exc:
                log.warning(
                    "%s: leftover pid %d does not answer (%s)", self.name, leftover.pid, exc
                )
            else:
                log.info(
                    "%s: reusing running pid %d from %s", self.name, leftover.pid, self.pid_file
                )
                self.process = leftover
                return True
        log.info(
            "%s: stopping leftover pid %d (wrong ports or not answering)", self.name, leftover.pid
        )
        leftover.stop(self.stop_timeout)
        return False

    def _start_new(self) -> None:
        ensure_ports_free(self.ports())
        self.prepare()
        ensure_ports_free(self.ports())
        process = ManagedProcess.spawn(
            self.name,
            self.command(),
            pid_file=self.pid_file,
            log_file=self.log_file,
            run_as=self.run_as(),
            stop_signal=self.stop_signal,
        )
        self.process = process
        launched = time.monotonic()
        try:
            self._wait_ready(self.local_url(), process, self.ready_timeout)
            self.after_ready()
        except BaseException:
            self.stop()
            raise
        self.last_launch_to_ready_seconds = time.monotonic() - launched
        log.info(
            "%s: ready at %s (pid %d, %.1fs after launch)",
            self.name,
            self.local_url(),
            process.pid,
            self.last_launch_to_ready_seconds,
        )

    def _wait_ready(self, url: str, process: ManagedProcess | None, timeout: float) -> None:
        def died() -> str | None:
            if process is None or process.is_alive():
                return None
            return (
                f"process {process.pid} exited (code {process.exit_code()}); "
                f"last lines of {self.log_file}:\n{log_tail(self.log_file)}"
            )

        wait_until(
            lambda: self.probe(url),
            what=f"{self.name} at {redact(url)}",
            timeout=timeout,
            retry_on=self.retry_on,
            abort=died,
        )

    def stop(self) -> None:
        """Stop the process this object started or adopted; data stays on disk."""
        if self.process is not None:
            self.process.stop(self.stop_timeout)
            self.process = None

    def stop_leftover(self) -> bool:
        """Stop a server recorded in the pid file (e.g. after a crash). True if one ran."""
        leftover = ManagedProcess.from_pid_file(
            self.name, self.pid_file, self.marker, self.stop_signal
        )
        if leftover is None:
            return False
        leftover.stop(self.stop_timeout)
        return True
