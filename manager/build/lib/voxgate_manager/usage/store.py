"""Usage per key, model and UTC day in SQLite (survives restarts), with in-memory reservations for
requests still running, so that concurrent requests cannot overrun a limit together."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from voxgate_manager import db

MIGRATIONS = Path(__file__).with_name("migrations")


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class UsageStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        db.migrate(conn, "usage", MIGRATIONS)
        # key -> [chars, audio_s] reserved by admitted requests not yet recorded
        self.pending: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def used(self, key_id: str, since_day: str) -> tuple[int, float]:
        row = self.conn.execute("SELECT COALESCE(SUM(chars), 0), COALESCE(SUM(audio_s), 0) FROM usage_daily"
                                " WHERE key_id = ? AND day >= ?", (key_id, since_day)).fetchone()
        return int(row[0]), float(row[1])

    def record(self, key_id: str, model: str, chars: int, audio_s: float, cost: float, cache_hit: bool, fallback: bool,
               now: float | None = None) -> None:
        day = day_of(now or time.time())
        self.conn.execute(
            "INSERT INTO usage_daily (key_id, model, day, requests, chars, audio_s, cost, cache_hits, fallbacks)"
            " VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (key_id, model, day) DO UPDATE SET"
            " requests = requests + 1, chars = chars + excluded.chars, audio_s = audio_s + excluded.audio_s,"
            " cost = cost + excluded.cost, cache_hits = cache_hits + excluded.cache_hits, fallbacks = fallbacks + excluded.fallbacks",
            (key_id, model, day, chars, audio_s, cost, int(cache_hit), int(fallback)),
        )

    def report(self, key_id: str | None = None, since_day: str | None = None, until_day: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if key_id:
            where.append("key_id = ?")
            args.append(key_id)
        if since_day:
            where.append("day >= ?")
            args.append(since_day)
        if until_day:
            where.append("day <= ?")
            args.append(until_day)
        query = ("SELECT key_id, model, SUM(requests) AS requests, SUM(chars) AS chars, SUM(audio_s) AS audio_seconds,"
                 " SUM(cost) AS cost, SUM(cache_hits) AS cache_hits, SUM(fallbacks) AS fallbacks, MIN(day) AS first_day,"
                 " MAX(day) AS last_day FROM usage_daily" + (" WHERE " + " AND ".join(where) if where else "")
                 + " GROUP BY key_id, model ORDER BY key_id, model")
        return [dict(r) for r in self.conn.execute(query, args)]
