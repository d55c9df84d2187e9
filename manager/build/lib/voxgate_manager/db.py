"""One SQLite connection factory and a migrations runner shared by the manager's components
(cache, usage; accounts later). Each component keeps its own ``migrations/`` folder of numbered
``NNN_name.sql`` files; the applied ones are recorded per component in ``schema_migrations``, so
components can share one database file without knowing each other's schema."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

_NAME = re.compile(r"^(\d+)_[A-Za-z0-9_]+\.sql$")
_lock = threading.Lock()


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode with WAL (readers never block the writer), a busy timeout
    (several processes or threads may write), and foreign keys on. ``":memory:"`` for a private
    throw-away database."""
    target = str(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(target, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    if target != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate(conn: sqlite3.Connection, component: str, folder: str | Path) -> list[str]:
    """Apply the component's migrations not yet applied, in number order, each in one transaction.
    Returns the names applied now."""
    files = sorted(
        (int(m.group(1)), p) for p in Path(folder).iterdir() if (m := _NAME.match(p.name))
    )
    applied_now: list[str] = []
    with _lock:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL,"
            " name TEXT NOT NULL, applied_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0), PRIMARY KEY (component, version))"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations WHERE component = ?", (component,))}
        for version, path in files:
            if version in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                # executescript would COMMIT the open transaction first: run statements one by one
                for stmt in _statements(path.read_text(encoding="utf-8")):
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_migrations (component, version, name) VALUES (?, ?, ?)",
                             (component, version, path.name))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            applied_now.append(path.name)
    return applied_now


def _statements(script: str) -> list[str]:
    """The script's statements one by one (a ';' inside a string or trigger body does not split)."""
    text = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    out, buf = [], ""
    for piece in text.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n\t;"):
                out.append(buf.strip())
            buf = ""
    if buf.strip(" \n\t;"):
        out.append(buf.strip())
    return out
