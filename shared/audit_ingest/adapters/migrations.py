"""Schema migrations: the SQL files in `audit_ingest/migrations`, applied once each, in order."""

from __future__ import annotations

from importlib.resources import files

import psycopg

# Any constant works; it only has to be the same for every process that migrates.
_LOCK_ID = 0x4155_4449_5400


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) pairs, sorted by file name (`0001_api_keys.sql` -> `0001_api_keys`)."""
    folder = files("audit_ingest") / "migrations"
    found = [
        (item.name.removesuffix(".sql"), item.read_text(encoding="utf-8"))
        for item in folder.iterdir()
        if item.name.endswith(".sql")
    ]
    return sorted(found)


def migrate(conninfo: str) -> list[str]:
    """Apply pending migrations in one transaction each; returns the versions applied.

    An advisory lock serialises concurrent runs (say, two replicas of a migration job).
    """
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
