"""The studio's history: each user's recent clips, on disk with a row in SQLite, replayed
from there (never re-synthesised). Only the owner can list, fetch or delete a clip."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from voxgate_manager.accounts.sqlite import Database, migrate

KEEP_PER_USER = 50
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav",
               "pcm": "audio/L16"}


class ClipStore:
    def __init__(self, db: Database, folder: Path) -> None:
        self.db = db
        self.folder = folder
        migrate(db, "voxgate_manager.jobs")

    def _path(self, clip_id: str, fmt: str) -> Path:
        return self.folder / f"{clip_id}.{fmt}"

    def save(self, user_id: int, model: str, voice: str, fmt: str, text: str, data: bytes) -> str:
        clip_id = "clip_" + secrets.token_hex(8)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._path(clip_id, fmt).write_bytes(data)
        self.db.execute("INSERT INTO clips (id, user_id, model, voice, format, text, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (clip_id, user_id, model, voice, fmt, text[:2000], len(data), time.time()))
        for row in self.db.all("SELECT id, format FROM clips WHERE user_id = ? ORDER BY created_at DESC LIMIT -1 OFFSET ?",
                               (user_id, KEEP_PER_USER)):
            self._remove(row["id"], row["format"])
        return clip_id

    def _remove(self, clip_id: str, fmt: str) -> None:
        self._path(clip_id, fmt).unlink(missing_ok=True)
        self.db.execute("DELETE FROM clips WHERE id = ?", (clip_id,))

    @staticmethod
    def _public(row: Any) -> dict[str, Any]:
        return {"id": row["id"], "object": "clip", "model": row["model"], "voice": row["voice"], "format": row["format"],
                "text": row["text"], "bytes": row["bytes"], "created_at": int(row["created_at"]),
                "audio_url": f"/api/tts/history/{row['id']}/audio"}

    def list(self, user_id: int, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT * FROM clips WHERE user_id = ? ORDER BY created_at DESC LIMIT ?", (user_id, limit))
        return [self._public(r) for r in rows]

    def get(self, clip_id: str, user_id: int) -> tuple[dict[str, Any], Path] | None:
        row = self.db.one("SELECT * FROM clips WHERE id = ? AND user_id = ?", (clip_id, user_id))
        if row is None or not self._path(row["id"], row["format"]).exists():
            return None
        return self._public(row), self._path(row["id"], row["format"])

    def delete(self, clip_id: str, user_id: int) -> bool:
        row = self.db.one("SELECT * FROM clips WHERE id = ? AND user_id = ?", (clip_id, user_id))
        if row is None:
            return False
        self._remove(row["id"], row["format"])
        return True
