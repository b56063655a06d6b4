"""Local PostgreSQL: initdb once into <root>/postgres, serve on 127.0.0.1, create the db."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
from pathlib import Path
from typing import ClassVar

import psycopg
from psycopg import sql

from devstack.accounts import RunAs, service_account
from devstack.errors import ServiceStartError
from devstack.pg_binaries import ensure_pg_bin_dir
from devstack.service import Service

log = logging.getLogger(__name__)

INITDB_TIMEOUT_S = 120.0
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


class PostgresService(Service):
    """PostgreSQL with trust auth on 127.0.0.1 and a unix socket inside the root.

    Stopped with SIGINT ("fast" shutdown: clients are disconnected, a
    checkpoint is written), since SIGTERM ("smart") waits for every client.
    ``fsync=off`` only risks data on an OS crash, never on a process kill.
    """

    name = "postgres"
    env_var = "DATABASE_URL"
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT
    retry_on: ClassVar[tuple[type[Exception], ...]] = (psycopg.OperationalError,)

    def __init__(
        self,
        root: Path,
        port: int,
        *,
        database: str = "audit",
        user: str = "postgres",
        ready_timeout: float = 60.0,
    ) -> None:
        super().__init__(root, ready_timeout=ready_timeout)
        self.port = port
        self.database = database
        self.user = user
        self.data_dir = self.root / "postgres"
        self.socket_dir = self.root / "run"
        self._bin: Path | None = None
        self._run_as: RunAs | None = None

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def marker(self) -> str:
        return str(self.data_dir)

    def local_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def ports(self) -> dict[str, int]:
        return {"postgres": self.port}

    def run_as(self) -> RunAs | None:
        return self._run_as

    def prepare(self) -> None:
        version_file = self.data_dir / "PG_VERSION"
        major = version_file.read_text().strip() if version_file.exists() else None
        self._bin = ensure_pg_bin_dir(major)
        self._run_as = service_account()
        if self._run_as is not None:
            self._run_as.ensure_reachable(self.root)
        if major is None:
            self._initdb()
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self._run_as is not None:
            self._run_as.chown(self.socket_dir)
            if self.data_dir.stat().st_uid != self._run_as.uid:
                self._run_as.chown(self.data_dir, recursive=True)

    def _initdb(self) -> None:
        """initdb into a scratch dir, then rename: an interrupted init leaves no half cluster."""
        assert self._bin is not None
        log.info("postgres: creating a database cluster in %s (first run only)", self.data_dir)
        scratch = self.root / "postgres.initdb-tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if self._run_as is not None:
            self._run_as.chown(scratch)
        argv = [
            str(self._bin / "initdb"),
            "-D",
            str(scratch),
            "-U",
            self.user,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        run_as = self._run_as
        try:
            subprocess.run(
                argv,
                check=True,
                capture_output=True,
                text=True,
                timeout=INITDB_TIMEOUT_S,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
                cwd=scratch,
            )
        except subprocess.CalledProcessError as exc:
            raise ServiceStartError(f"postgres: initdb failed:\n{exc.stdout}{exc.stderr}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ServiceStartError(f"postgres: initdb timed out after {exc.timeout}s") from exc
        scratch.rename(self.data_dir)

    def command(self) -> list[str]:
        assert self._bin is not None
        sockets = str(self.socket_dir)
        if len(sockets) > SOCKET_PATH_MAX:
            sockets = ""  # path too long for a unix socket: TCP only
        return [
            str(self._bin / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={sockets}",
            "-c",
            "fsync=off",
            "-c",
            "logging_collector=off",
        ]

    def probe(self, url: str) -> bool:
        target = url if self.external_url is not None else self._admin_url()
        with psycopg.connect(target, connect_timeout=3) as conn:
            conn.execute("select 1")
        return True

    def after_ready(self) -> None:
        with psycopg.connect(self._admin_url(), autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (self.database,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(self.database)))
