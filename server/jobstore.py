"""Job records in an embedded database, so finished work is found again after a restart (one
process; ``server.jobstore_redis`` is the same interface for several processes sharing a store).

SQLite in WAL mode (readers never wait for the writer; a crash leaves the last committed state),
one row per job: kind, parameters, status, progress, message, result, error, notes, times. Jobs
that were queued or running when the process died are marked ``interrupted`` when the store opens:
their partial files stay, and submitting the same work again restarts it (a table build continues
from its checkpoint). Writes are serialised by a lock; each is its own short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["JobStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    notes TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    finished REAL
)
"""
_FIELDS = ("id", "kind", "params", "status", "progress", "message", "result", "error", "notes", "created", "finished")
_JSON = ("params", "result", "notes")


class JobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def mark_interrupted(self) -> int:
        """Jobs a previous process left queued or running: they did not finish. Returns how many."""
        with self._lock:
            cursor = self._db.execute("UPDATE jobs SET status = 'interrupted' WHERE status IN ('queued', 'running')")
            return cursor.rowcount

    def put(self, record: dict[str, Any]) -> None:
        row = [json.dumps(record[f]) if f in _JSON else record[f] for f in _FIELDS]
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO jobs ({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})", row)

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_FIELDS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._record(row) if row is not None else None

    def all(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most recent records, oldest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_FIELDS)} FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [self._record(row) for row in reversed(rows)]

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    @staticmethod
    def _record(row: tuple) -> dict[str, Any]:
        record = dict(zip(_FIELDS, row))
        for f in _JSON:
            record[f] = json.loads(record[f])
        return record

    def close(self) -> None:
        with self._lock:
            self._db.close()
