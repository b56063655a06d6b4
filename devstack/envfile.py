"""The stack's environment as a KEY=VALUE file, readable by `set -a; . file` and dotenv."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render_env(env: Mapping[str, str]) -> str:
    """One KEY=VALUE line per entry; values are shell-quoted only when they need it."""
    lines = []
    for key, value in env.items():
        if not _KEY.match(key):
            raise ValueError(f"not a valid environment variable name: {key!r}")
        lines.append(f"{key}={shlex.quote(value)}\n")
    return "".join(lines)


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """Atomically (re)write ``path``; returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_env(env))
    tmp.replace(path)
    return path
