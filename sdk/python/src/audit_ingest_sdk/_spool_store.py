"""The spool's file: one SQLite database (WAL mode) holding events until the server has them.

Why SQLite and not a segment file of our own: a committed transaction survives a crash of the
process (and, with `synchronous=FULL`, of the machine) without any fsync or recovery code of
ours; an interrupted write is rolled back on the next open; deleting the events a 202 covered
is one statement, not a compaction; it is one file (plus its `-wal`); and `sqlite3` is in the
standard library, so the SDK gains no dependency.

One client per file: the connection runs in `locking_mode=EXCLUSIVE`, so it holds SQLite's lock
from its first write until it closes, and any other connection (another process, or a second
client in this one) fails at once with "database is locked", which `open` turns into
`SpoolLockedError`. The operating system drops the lock when the process dies, `kill -9`
included. (Exclusive mode also means WAL needs no shared-memory index.)

Not thread-safe by itself: `Spool` serialises every call under its lock.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from audit_ingest_sdk._errors import SpoolLockedError
from audit_ingest_sdk._prepare import PreparedEvent
from audit_ingest_sdk._results import FieldError

Durability = Literal["full", "normal"]
SCHEMA_VERSION = 1

# AUTOINCREMENT: ids only grow, even after the newest rows were deleted, so FIFO order and
# "everything up to id N" (flush) stay true across restarts.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " idempotency_key TEXT NOT NULL, body BLOB NOT NULL, spooled_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY,"
    " idempotency_key TEXT NOT NULL, body BLOB NOT NULL, spooled_at REAL NOT NULL,"
    " failed_at REAL NOT NULL, status INTEGER, request_id TEXT, errors TEXT NOT NULL)",
)


@dataclass(frozen=True)
class SpooledEvent:
    """A row of the spool: its position (`id`, FIFO order) and the event as it will be sent."""

    id: int
    event: PreparedEvent
    spooled_at: float


@dataclass(frozen=True)
class Rejection:
    """Why the server refused one spooled event for good (it goes to the dead letters)."""

    spooled: SpooledEvent
    errors: tuple[FieldError, ...]
    status: int | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    """An event the server refused for good, kept in the spool's `dead_letters` table.

    `event` is the JSON object as sent (with its `idempotency_key`); `errors` are the server's
    reasons; `status` and `request_id` those of the answer that refused it; `spooled_at` and
    `failed_at` are Unix times.
    """

    idempotency_key: str
    event: dict[str, Any]
    errors: tuple[FieldError, ...]
    status: int | None
    request_id: str | None
    spooled_at: float
    failed_at: float


class SpoolStore:
    """The SQLite file, with running totals of what it holds (events and bytes of JSON)."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self.pending, self.pending_bytes = self._totals(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM events"
        )
        self.dead, self.dead_bytes = self._totals(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM dead_letters"
        )

    @classmethod
    def open(cls, path: Path, durability: Durability) -> SpoolStore:
        """Open (or create) the spool at `path`; raises `SpoolLockedError` when it is in use."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE ... COMMIT), not the
        # module's implicit ones. timeout=0: a held lock will not be released soon.
        db = sqlite3.connect(str(path), timeout=0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: each commit is fsynced, so a spooled event survives power loss too.
            # NORMAL (with WAL): survives a crash of the process, not of the machine.
            db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now, not at first send
            for statement in _SCHEMA:  # (not executescript: it would COMMIT first)
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise SpoolLockedError(
                    f"the spool {path} is in use by another client (one open client per spool "
                    "file: another process, or another client in this one, holds it)"
                ) from exc
            raise
        return cls(db, path)

    def append(self, events: Sequence[PreparedEvent]) -> None:
        """Store events in one transaction: all of them are spooled, or none."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT INTO events (idempotency_key, body, spooled_at) VALUES (?, ?, ?)",
                [(event.idempotency_key, event.body, now) for event in events],
            )
        self.pending += len(events)
        self.pending_bytes += sum(len(event.body) for event in events)

    def oldest(self, limit: int) -> list[SpooledEvent]:
        """The `limit` oldest events, in the order they were spooled."""
        rows = self._db.execute(
            "SELECT id, idempotency_key, body, spooled_at FROM events ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            SpooledEvent(id=row[0], event=PreparedEvent(bytes(row[2]), row[1]), spooled_at=row[3])
            for row in rows
        ]

    def first(self) -> tuple[int, float] | None:
        """The oldest event's id and spool time, or None when no event waits."""
        row = self._db.execute("SELECT id, spooled_at FROM events ORDER BY id LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), float(row[1]))

    def last_id(self) -> int:
        """The newest event's id (0 when empty)."""
        row = self._db.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)

    def settle(self, delivered: Sequence[SpooledEvent], refused: Sequence[Rejection]) -> None:
        """In one transaction: forget what was stored, move what was refused to dead letters."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT INTO dead_letters (idempotency_key, body, spooled_at, failed_at, status,"
                " request_id, errors) SELECT idempotency_key, body, spooled_at, ?, ?, ?, ?"
                " FROM events WHERE id = ?",
                [
                    (now, r.status, r.request_id, _errors_json(r.errors), r.spooled.id)
                    for r in refused
                ],
            )
            self._db.executemany(
                "DELETE FROM events WHERE id = ?",
                [(spooled.id,) for spooled in delivered] + [(r.spooled.id,) for r in refused],
            )
        moved = sum(len(r.spooled.event.body) for r in refused)
        self.pending -= len(delivered) + len(refused)
        self.pending_bytes -= sum(len(s.event.body) for s in delivered) + moved
        self.dead += len(refused)
        self.dead_bytes += moved

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The oldest dead letters (at most `limit`)."""
        rows = self._db.execute(
            "SELECT idempotency_key, body, errors, status, request_id, spooled_at, failed_at"
            " FROM dead_letters ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            DeadLetter(
                idempotency_key=row[0],
                event=json.loads(row[1]),
                errors=tuple(FieldError.from_json(item) for item in json.loads(row[2])),
                status=row[3],
                request_id=row[4],
                spooled_at=row[5],
                failed_at=row[6],
            )
            for row in rows
        ]

    def requeue_dead_letters(self) -> int:
        """Move every dead letter back to the end of the queue (same bytes, same key)."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO events (idempotency_key, body, spooled_at)"
                " SELECT idempotency_key, body, spooled_at FROM dead_letters ORDER BY id"
            )
            self._db.execute("DELETE FROM dead_letters")
        moved = self.dead
        self.pending += self.dead
        self.pending_bytes += self.dead_bytes
        self.dead = self.dead_bytes = 0
        return moved

    def purge_dead_letters(self) -> int:
        """Delete every dead letter; returns how many there were."""
        with self._transaction():
            self._db.execute("DELETE FROM dead_letters")
        purged = self.dead
        self.dead = self.dead_bytes = 0
        return purged

    def close(self) -> None:
        self._db.close()

    def _totals(self, query: str) -> tuple[int, int]:
        count, size = self._db.execute(query).fetchone()
        return int(count), int(size)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _errors_json(errors: Sequence[FieldError]) -> str:
    return json.dumps(
        [{"field": e.field, "message": e.message, "code": e.code} for e in errors],
        ensure_ascii=False,
    )
