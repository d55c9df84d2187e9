"""The response cache: audio files on disk plus a SQLite index (table ``tts_cache``).

A file is written under a temporary name while the answer streams, and only renamed into place
and indexed once the answer is complete (a client that left, an upstream that broke off: the
partial file is deleted). Entries expire after ``ttl_s``; when the files exceed ``max_bytes`` the
least recently used go first. All index operations run on the event loop's thread and take
milliseconds; they are serialised by SQLite's own locking when several managers share a folder."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxgate_manager import db

MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class Entry:
    key: str
    model: str
    voice: str
    format: str
    content_type: str
    path: Path
    size: int
    duration: float | None
    hits: int


class CacheWriter:
    """Collects one answer; ``commit()`` indexes it, ``abort()`` throws it away."""

    def __init__(self, cache: ResponseCache, key: str, model: str, voice: str, fmt: str, content_type: str) -> None:
        self.cache, self.key, self.model, self.voice, self.fmt, self.content_type = cache, key, model, voice, fmt, content_type
        self.tmp = cache.dir / "tmp" / f"{key}.{uuid.uuid4().hex}.part"
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit/abort
        self.size = 0
        self.too_big = False

    def write(self, chunk: bytes) -> None:
        if self.too_big:
            return
        self.size += len(chunk)
        if self.size > self.cache.max_entry_bytes:
            self.too_big = True  # one answer larger than the cap allows is not kept
            return
        self._file.write(chunk)

    def commit(self, duration: float | None = None) -> Entry | None:
        self._file.close()
        if self.too_big or self.size == 0:
            self.abort()
            return None
        return self.cache._insert(self, duration)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


class ResponseCache:
    def __init__(self, folder: str | Path, max_bytes: int, ttl_s: float, conn: sqlite3.Connection | None = None) -> None:
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_entry_bytes = max(1, max_bytes // 4)
        self.ttl_s = ttl_s
        self.conn = conn or db.connect(self.dir / "index.sqlite3")
        db.migrate(self.conn, "cache", MIGRATIONS)
        self.evictions = 0
        self.expired = 0
        self.on_evict = lambda n: None  # metrics hook
        self._clean_tmp()

    def _clean_tmp(self) -> None:
        """Parts left by a manager that died mid-write are never indexed: remove them."""
        tmp = self.dir / "tmp"
        if tmp.is_dir():
            for p in tmp.iterdir():
                with contextlib.suppress(OSError):
                    p.unlink()

    # -- lookups ------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        now = time.time()
        row = self.conn.execute("SELECT * FROM tts_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        path = self.dir / row["path"]
        if (row["expires"] is not None and row["expires"] <= now) or not path.is_file():
            self._delete([row])
            self.expired += 1
            return None
        self.conn.execute("UPDATE tts_cache SET last_access = ?, hits = hits + 1 WHERE key = ?", (now, key))
        return Entry(key, row["model"], row["voice"], row["format"], row["content_type"], path, row["size"],
                     row["duration"], row["hits"] + 1)

    def has(self, key: str) -> bool:
        """Whether ``get`` would answer, without counting a hit or touching the entry's LRU place."""
        row = self.conn.execute("SELECT path, expires FROM tts_cache WHERE key = ?", (key,)).fetchone()
        if row is None or (row["expires"] is not None and row["expires"] <= time.time()):
            return False
        return (self.dir / row["path"]).is_file()

    def writer(self, key: str, model: str, voice: str, fmt: str, content_type: str) -> CacheWriter:
        return CacheWriter(self, key, model, voice, fmt, content_type)

    # -- writes -------------------------------------------------------------------------------

    def _insert(self, w: CacheWriter, duration: float | None) -> Entry:
        rel = Path(w.key[:2]) / f"{w.key}.{w.fmt}"
        final = self.dir / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(w.tmp, final)
        now = time.time()
        expires = now + self.ttl_s if self.ttl_s > 0 else None
        self.conn.execute(
            "INSERT OR REPLACE INTO tts_cache (key, model, voice, format, content_type, path, duration, size, created,"
            " last_access, hits, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (w.key, w.model, w.voice, w.fmt, w.content_type, str(rel), duration, w.size, now, now, expires),
        )
        self.evict()
        return Entry(w.key, w.model, w.voice, w.fmt, w.content_type, final, w.size, duration, 0)

    def evict(self) -> int:
        """Drop expired entries, then the least recently used until the total fits max_bytes."""
        now = time.time()
        gone = self.conn.execute("SELECT key, path FROM tts_cache WHERE expires IS NOT NULL AND expires <= ?", (now,)).fetchall()
        self.expired += len(gone)
        victims = list(gone)
        total = self.conn.execute("SELECT COALESCE(SUM(size), 0) FROM tts_cache WHERE expires IS NULL OR expires > ?", (now,)).fetchone()[0]
        if total > self.max_bytes:
            for row in self.conn.execute("SELECT key, path, size FROM tts_cache WHERE expires IS NULL OR expires > ?"
                                         " ORDER BY last_access ASC", (now,)):
                if total <= self.max_bytes:
                    break
                victims.append(row)
                total -= row["size"]
                self.evictions += 1
                self.on_evict(1)
        self._delete(victims)
        return len(victims)

    def _delete(self, rows: list[Any]) -> None:
        for row in rows:
            self.conn.execute("DELETE FROM tts_cache WHERE key = ?", (row["key"],))
            with contextlib.suppress(OSError):
                (self.dir / row["path"]).unlink()

    def purge(self, model: str | None = None, key: str | None = None, voice: str | None = None) -> int:
        where, args = [], []
        for column, value in (("model", model), ("key", key), ("voice", voice)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        query = "SELECT key, path FROM tts_cache" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.conn.execute(query, args).fetchall()
        self._delete(rows)
        return len(rows)

    # -- reports ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        row = self.conn.execute("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes, COALESCE(SUM(hits), 0) AS hits"
                                " FROM tts_cache").fetchone()
        per_model = {r["model"]: {"entries": r["n"], "bytes": r["b"]} for r in
                     self.conn.execute("SELECT model, COUNT(*) AS n, SUM(size) AS b FROM tts_cache GROUP BY model")}
        return {"dir": str(self.dir), "entries": row["n"], "bytes": row["bytes"], "max_bytes": self.max_bytes,
                "ttl_s": self.ttl_s, "hits_served": row["hits"], "evictions": self.evictions, "models": per_model}

    def entries(self, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM tts_cache", []
        if model:
            query, args = query + " WHERE model = ?", [model]
        rows = self.conn.execute(query + " ORDER BY last_access DESC LIMIT ?", [*args, limit]).fetchall()
        return [dict(r) for r in rows]

    def total_bytes(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(SUM(size), 0) FROM tts_cache").fetchone()[0])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def audio_duration(path: Path, fmt: str, content_type: str = "") -> float | None:
    """Seconds of audio in a stored answer (wav/pcm from their size, others with PyAV); None if unknown."""
    try:
        if fmt == "pcm":
            rate = 24000
            if "rate=" in content_type:
                rate = int(content_type.split("rate=")[1].split(";")[0])
            return path.stat().st_size / (2 * rate)
        if fmt == "wav":
            with open(path, "rb") as f:
                head = f.read(44)
            if head[:4] == b"RIFF" and head[12:16] == b"fmt ":
                byte_rate = struct.unpack("<I", head[28:32])[0]
                if byte_rate:
                    return (path.stat().st_size - 44) / byte_rate
        import av

        with av.open(str(path)) as c:
            if c.duration:
                return c.duration / 1_000_000
            stream = c.streams.audio[0]
            total = 0
            for frame in c.decode(stream):
                total += frame.samples
            return total / stream.rate if stream.rate else None
    except Exception:
        return None


def duration_from_bytes(fmt: str, content_type: str, head: bytes, size: int) -> float | None:
    """Seconds of a pcm (24 kHz unless the content type says ``rate=``) or wav answer from its size
    and first bytes, for answers not kept; None for compressed formats."""
    if fmt == "pcm":
        rate = 24000
        if "rate=" in content_type:
            try:
                rate = int(content_type.split("rate=")[1].split(";")[0])
            except ValueError:
                pass
        return size / (2 * rate)
    if fmt == "wav" and head[:4] == b"RIFF" and head[12:16] == b"fmt " and len(head) >= 44:
        byte_rate = struct.unpack("<I", head[28:32])[0]
        return (size - 44) / byte_rate if byte_rate else None
    return None
