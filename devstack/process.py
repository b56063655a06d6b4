"""Server processes: spawn in their own session, record a pid file, stop gracefully."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.accounts import RunAs
from devstack.errors import DevstackError

log = logging.getLogger(__name__)


def _cmdline(pid: int) -> str | None:
    """The process's command line joined by spaces, or None if it is gone or a zombie."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None


@dataclass
class ManagedProcess:
    """One server process that devstack started (or adopted from its pid file)."""

    name: str
    pid: int
    pid_file: Path
    stop_signal: signal.Signals = signal.SIGTERM
    popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: list[str],
        *,
        pid_file: Path,
        log_file: Path,
        run_as: RunAs | None = None,
        env: dict[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> ManagedProcess:
        """Start ``argv`` detached from our session, output appended to ``log_file``."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
        tmp = pid_file.with_suffix(".pid.tmp")
        tmp.write_text(f"{popen.pid}\n")
        tmp.replace(pid_file)
        log.debug("%s: started pid %d: %s", name, popen.pid, " ".join(argv))
        return cls(name, popen.pid, pid_file, stop_signal, popen)

    @classmethod
    def from_pid_file(
        cls, name: str, pid_file: Path, marker: str, stop_signal: signal.Signals = signal.SIGTERM
    ) -> ManagedProcess | None:
        """The live process recorded in ``pid_file`` if its command line contains ``marker``.

        A stale pid file (dead process, or a pid reused by an unrelated program)
        is removed and None is returned.
        """
        try:
            pid = int(pid_file.read_text().strip())
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("%s: ignoring unreadable pid file %s", name, pid_file)
            pid_file.unlink(missing_ok=True)
            return None
        cmdline = _cmdline(pid)
        if cmdline is None or marker not in cmdline:
            pid_file.unlink(missing_ok=True)
            return None
        return cls(name, pid, pid_file, stop_signal)

    def is_alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _cmdline(self.pid) is not None

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def _wait_exit(self, timeout: float) -> bool:
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.is_alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _signal(self, sig: signal.Signals, *, group: bool) -> None:
        try:
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return
        except PermissionError as exc:
            raise DevstackError(
                f"{self.name}: not allowed to signal pid {self.pid} (started by another user?)"
            ) from exc

    def stop(self, timeout: float) -> None:
        """Graceful stop: ``stop_signal``, wait ``timeout``, then SIGKILL the process group."""
        if self.is_alive():
            started = time.monotonic()
            self._signal(self.stop_signal, group=False)
            if self._wait_exit(timeout):
                log.info(
                    "%s: stopped pid %d in %.1fs", self.name, self.pid, time.monotonic() - started
                )
            else:
                log.warning(
                    "%s: pid %d still running after %.0fs, killing it", self.name, self.pid, timeout
                )
                self._signal(signal.SIGKILL, group=True)
                if not self._wait_exit(10.0):
                    raise DevstackError(f"{self.name}: pid {self.pid} survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
