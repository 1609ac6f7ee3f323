"""The `sqlite` session store: every session of one machine in one database file, no sessions folder.

One table, one row per exchange. Its INTEGER PRIMARY KEY AUTOINCREMENT is the order: SQLite runs one write
transaction at a time, so ids grow in commit order, and a session's exchanges are totally ordered by id. An append
is one INSERT (atomic: the row is whole or absent), durable when it returns (WAL journal, synchronous=FULL). A read
is one SELECT, which sees one snapshot of the database (WAL readers never block the writer or see half a commit);
a position is the last id read. Threads and processes sharing the file are safe (each thread opens its own
connection; writers wait up to `timeout_s` for the lock, then the turn fails with StoreUnavailableError).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from app.memory import StoreUnavailableError
from retrieval.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanges_session ON exchanges (session, id);
"""


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: Path, timeout_s: float = 30.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._guard("open"):
            self._conn().executescript(_SCHEMA)

    @classmethod
    def configured(cls, memory, sessions: Path | None) -> SqliteStore:
        path = memory.path
        if path is None:
            if sessions is None:
                raise ConfigError("memory.path: the sqlite store needs a database file; set memory.path (or "
                                  "paths.sessions, beside which <sessions>.sqlite is kept)")
            path = sessions.parent / f"{sessions.name}.sqlite"
        return cls(path)

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a connection is never shared between threads or across a fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)  # autocommit
            self._wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL. Two processes opening a new file at once can get "database is locked" here at
        once: changing the journal mode can fail without SQLite's busy handler waiting, so retry until timeout_s."""
        deadline = time.monotonic() + self.timeout_s
        pause = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    @contextmanager
    def _guard(self, what: str):
        try:
            yield
        except sqlite3.OperationalError as e:  # locked past the timeout, disk full, file gone
            raise StoreUnavailableError(f"session store sqlite at {self.path}: {what} failed ({e})") from e

    def append(self, session: str, record: dict) -> None:
        with self._guard("append"):
            self._conn().execute("INSERT INTO exchanges (session, record) VALUES (?, ?)",
                                 (session, json.dumps(record, ensure_ascii=False)))

    def read(self, session: str, position: int) -> tuple[list[dict], int]:
        with self._guard("read"):
            rows = self._conn().execute("SELECT id, record FROM exchanges WHERE session = ? AND id > ? ORDER BY id",
                                        (session, position)).fetchall()
        records = []
        for _id, text in rows:
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError:
                continue  # a malformed record is skipped, never fatal
        return records, rows[-1][0] if rows else position
