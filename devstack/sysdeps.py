"""Finding system programs, and installing missing ones with apt-get when we are root.

apt-get is the fallback of last resort: it is what works on a fresh Debian
machine (CI runs as root there), it needs no network beyond Debian's mirrors,
and a non-root developer gets an explicit "install X" message instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from devstack.errors import ToolMissingError

log = logging.getLogger(__name__)

_apt_lock = threading.Lock()
_apt_updated = False
APT_TIMEOUT_S = 900.0


def is_root() -> bool:
    return os.geteuid() == 0


def find_program(name: str, extra_dirs: Iterable[Path] = ()) -> Path | None:
    """``name`` on PATH, else in one of ``extra_dirs``; None when absent."""
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    for directory in extra_dirs:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _run_apt(args: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(
            ["apt-get", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolMissingError(f"apt-get {' '.join(args)} timed out after {exc.timeout}s") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise ToolMissingError(f"apt-get {' '.join(args)} failed ({result.returncode}):\n{tail}")


def apt_install(packages: Sequence[str], *, needed_for: str) -> None:
    """Install Debian ``packages`` (root only); otherwise explain what to install."""
    names = " ".join(packages)
    if not is_root() or shutil.which("apt-get") is None:
        raise ToolMissingError(
            f"{needed_for} is not installed. Install it (e.g. `sudo apt-get install -y {names}`) "
            f"or point devstack at an existing server through its environment variable."
        )
    global _apt_updated
    with _apt_lock:
        started = time.monotonic()
        if not _apt_updated:
            log.info("apt-get update (to install %s)", names)
            _run_apt(["update"])
            _apt_updated = True
        log.info("apt-get install -y %s (for %s)", names, needed_for)
        _run_apt(["install", "-y", "--no-install-recommends", *packages])
        log.info("installed %s in %.1fs", names, time.monotonic() - started)
