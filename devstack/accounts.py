"""An unprivileged account for servers that refuse to run as root (PostgreSQL).

When devstack runs as root (CI, containers) it creates a system user
``auditdev`` once (``useradd --system``) and starts the server as that user
through ``subprocess.Popen(user=..., group=...)``; the server's data
directories are chowned to it. Run as a normal user, nothing changes: servers
run as that user.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import DevstackError
from devstack.sysdeps import is_root

log = logging.getLogger(__name__)

SERVICE_USER = "auditdev"
_lock = threading.Lock()


@dataclass(frozen=True)
class RunAs:
    """The uid/gid a server process is switched to before exec."""

    user: str
    uid: int
    gid: int

    def chown(self, path: Path, *, recursive: bool = False) -> None:
        os.chown(path, self.uid, self.gid)
        if recursive:
            for dirpath, dirnames, filenames in os.walk(path):
                for name in dirnames + filenames:
                    os.chown(os.path.join(dirpath, name), self.uid, self.gid, follow_symlinks=False)

    def ensure_reachable(self, path: Path) -> None:
        """Raise if this user cannot traverse every directory above ``path``."""
        for parent in reversed(path.resolve().parents):
            mode = parent.stat()
            if mode.st_uid == self.uid:
                ok = bool(mode.st_mode & stat.S_IXUSR)
            elif mode.st_gid == self.gid:
                ok = bool(mode.st_mode & stat.S_IXGRP)
            else:
                ok = bool(mode.st_mode & stat.S_IXOTH)
            if not ok:
                raise DevstackError(
                    f"user {self.user!r} (the server cannot run as root) cannot enter {parent}; "
                    f"use a root directory outside it or run `chmod o+x {parent}`"
                )


def service_account(name: str = SERVICE_USER) -> RunAs | None:
    """The account to run root-averse servers as: None when we are not root."""
    if not is_root():
        return None
    with _lock:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            _create_user(name)
            entry = pwd.getpwnam(name)
    return RunAs(name, entry.pw_uid, entry.pw_gid)


def _create_user(name: str) -> None:
    log.info("creating system user %r to run PostgreSQL (it refuses to run as root)", name)
    argv = [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        name,
    ]
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise DevstackError(f"cannot create user {name!r}: useradd is not installed") from exc
    except subprocess.CalledProcessError as exc:
        if exc.returncode == 9:  # created meanwhile by a concurrent devstack
            return
        raise DevstackError(f"useradd {name} failed: {exc.stderr.strip()}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DevstackError(f"useradd {name} timed out") from exc
