"""The voice library: reference clips for voice cloning, kept as plain files in ``voices_dir``.

The folder is the single source of truth, so changes survive restarts, operators can drop
clips in by hand, and several processes (or engines) reading it never disagree:

    voices/alice.wav       the clip (wav, mp3 or flac)
    voices/alice.json      optional metadata: {"name", "language", "description", "created_at"}

A voice's id is its file stem. Uploaded names are reduced to ``[a-z0-9_-]`` so no name can
leave the folder; writes go to a hidden temporary file first and are renamed into place, so a
failed upload leaves the folder as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from voxgate_server.audio.probe import NotAudio, UnsupportedContainer, header_duration, probe_clip

log = logging.getLogger("voxgate.voices")

EXTENSIONS: tuple[str, ...] = ("wav", "mp3", "flac")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Ids engines use for their own voices (chatterbox-turbo's built-in voice is "default").
RESERVED_IDS = frozenset({"default"})
_WRITE_LOCK = threading.Lock()


class VoiceLibrarySettings(BaseSettings):
    """``VOXGATE_VOICE_*``: limits on uploaded reference clips."""

    model_config = SettingsConfigDict(env_prefix="VOXGATE_VOICE_", extra="ignore")

    upload_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # Chatterbox Turbo needs more than 5 s; clips longer than max are mostly unused (Turbo reads 15 s).
    min_seconds: float = Field(5.0, ge=0)
    max_seconds: float = Field(120.0, gt=0)


class VoiceError(Exception):
    """A voice request the library refuses; carries the HTTP status and OpenAI error fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass(frozen=True)
class StoredVoice:
    id: str
    name: str
    path: Path
    format: str
    language: str = "en"
    description: str = ""
    duration_s: float | None = None
    bytes: int = 0
    created_at: int = 0
    sha256: str = ""  # the clip's content hash: a replaced clip is a new voice to caches downstream

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path")
        return {"object": "voice", **out, "builtin": False}


def sanitize_voice_id(name: str) -> str:
    """A file-safe id from any name: ASCII-folded, lower case, ``[a-z0-9_-]``, at most 64 chars.

    Path separators, dots and everything else become ``-``, so even ``../../etc/passwd`` could
    only name ``etc-passwd`` inside the library (``add`` refuses such names outright).
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9_]+", "-", folded).strip("-_")
    return slug[:64].rstrip("-_")


def probe_audio(data: bytes, max_seconds: float | None = None) -> tuple[str, float]:
    """(extension, duration in seconds) of a wav/mp3/flac clip, decoded with PyAV."""
    try:
        info = probe_clip(data, max_seconds=max_seconds)
    except UnsupportedContainer as exc:
        raise VoiceError(400, f"Unsupported audio format {exc.name}; use wav, mp3 or flac.",
                         param="file", code="unsupported_audio_format") from None
    except NotAudio:
        raise VoiceError(400, "The file is not audio that can be decoded (expected wav, mp3 or flac).",
                         param="file", code="invalid_audio") from None
    return info.extension, info.duration_s


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class VoiceLibrary:
    def __init__(self, root: Path, settings: VoiceLibrarySettings | None = None) -> None:
        self.root = Path(root)
        self.settings = settings or VoiceLibrarySettings()
        # path -> ((inode, size, mtime_ns), sha256): each clip is hashed once, again only when the
        # file was replaced or rewritten (by an upload or by hand), so listing stays cheap
        self._hashes: dict[Path, tuple[tuple[int, int, int], str]] = {}
        self._hash_lock = threading.Lock()

    def clip_sha256(self, path: Path, stat: os.stat_result | None = None) -> str:
        """The clip's SHA-256, computed once per version of the file."""
        stat = stat or path.stat()
        sig = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._hash_lock:
            known = self._hashes.get(path)
        if known is not None and known[0] == sig:
            return known[1]
        digest = file_sha256(path)
        with self._hash_lock:
            self._hashes[path] = (sig, digest)
        return digest

    # -- reading ------------------------------------------------------------------------------

    def _clip_path(self, voice_id: str) -> Path | None:
        if not _ID_RE.match(voice_id):
            return None
        for ext in EXTENSIONS:
            path = self.root / f"{voice_id}.{ext}"
            if path.is_file():
                return path
        return None

    def _load(self, path: Path) -> StoredVoice:
        meta: dict[str, Any] = {}
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("ignoring unreadable voice metadata %s", sidecar)
        # Measured at upload; for clips dropped in by hand, what the header says. A bad clip is
        # listed (duration None); using it gives a clear 400.
        duration = meta.get("duration_s")
        if not isinstance(duration, (int, float)) or isinstance(duration, bool):
            declared = header_duration(path)
            duration = round(declared, 3) if declared else None
        stat = path.stat()
        return StoredVoice(
            id=path.stem,
            name=str(meta.get("name") or path.stem),
            path=path,
            format=path.suffix.lstrip("."),
            language=str(meta.get("language") or "en"),
            description=str(meta.get("description") or ""),
            duration_s=duration,
            bytes=stat.st_size,
            created_at=int(meta.get("created_at") or stat.st_mtime),
            sha256=self.clip_sha256(path, stat),
        )

    def list(self) -> list[StoredVoice]:
        if not self.root.is_dir():
            return []
        voices: dict[str, StoredVoice] = {}
        for path in sorted(self.root.iterdir()):
            ext = path.suffix.lstrip(".").lower()
            if ext not in EXTENSIONS or not path.is_file() or path.name.startswith("."):
                continue
            if not _ID_RE.match(path.stem):
                log.warning("skipping voice clip with an unusable name: %s", path.name)
                continue
            voices.setdefault(path.stem, self._load(path))
        return list(voices.values())

    def get(self, voice_id: str) -> StoredVoice | None:
        path = self._clip_path(voice_id)
        return None if path is None else self._load(path)

    # -- writing ------------------------------------------------------------------------------

    def validate_clip(self, data: bytes) -> tuple[str, float]:
        s = self.settings
        if len(data) > s.upload_max_bytes:
            raise VoiceError(413, f"The file is larger than {s.upload_max_bytes} bytes.",
                             param="file", code="file_too_large")
        ext, duration = probe_audio(data, max_seconds=s.max_seconds + 1)
        if duration <= s.min_seconds:
            raise VoiceError(400, f"The clip is {duration:.2f} s long; it must be longer than "
                                  f"{s.min_seconds:g} s.", param="file", code="audio_too_short")
        if duration > s.max_seconds:
            raise VoiceError(400, f"The clip is {duration:.1f} s long; at most {s.max_seconds:g} s is allowed.",
                             param="file", code="audio_too_long")
        return ext, duration

    def add(self, name: str, data: bytes, *, language: str = "en", description: str = "") -> StoredVoice:
        if any(part in name for part in ("/", "\\", "..", "\x00")):
            raise VoiceError(400, "The voice name must not contain '/', '\\' or '..'.",
                             param="name", code="invalid_name")
        voice_id = sanitize_voice_id(name)
        if not voice_id:
            raise VoiceError(400, "The voice name must contain at least one letter or digit.",
                             param="name", code="invalid_name")
        if voice_id in RESERVED_IDS:
            raise VoiceError(400, f"'{voice_id}' is reserved for a built-in voice; choose another name.",
                             param="name", code="invalid_name")
        if len(language) > 32 or len(description) > 1000 or len(name) > 200:
            raise VoiceError(400, "name (200), language (32) or description (1000 characters) is too long.",
                             param="description", code="invalid_value")
        ext, duration = self.validate_clip(data)
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"name": name.strip(), "language": language or "en", "description": description,
                "created_at": int(time.time()), "duration_s": round(duration, 3)}
        with _WRITE_LOCK:
            if self._clip_path(voice_id) is not None:
                raise VoiceError(409, f"A voice with id '{voice_id}' already exists; delete it first.",
                                 param="name", code="voice_exists")
            clip_tmp = self._write_temp(data)
            meta_tmp = self._write_temp(json.dumps(meta, indent=1).encode("utf-8"))
            try:
                os.replace(meta_tmp, self.root / f"{voice_id}.json")
                os.replace(clip_tmp, self.root / f"{voice_id}.{ext}")
            except OSError:
                for tmp in (clip_tmp, meta_tmp):
                    tmp.unlink(missing_ok=True)
                (self.root / f"{voice_id}.json").unlink(missing_ok=True)
                raise
        log.info("voice %s added (%s, %d bytes)", voice_id, ext, len(data))
        stored = self.get(voice_id)
        assert stored is not None
        return stored

    def _write_temp(self, data: bytes) -> Path:
        fd, name = tempfile.mkstemp(prefix=".upload-", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    def delete(self, voice_id: str) -> bool:
        with _WRITE_LOCK:
            path = self._clip_path(voice_id)
            if path is None:
                return False
            path.unlink()
            path.with_suffix(".json").unlink(missing_ok=True)
        log.info("voice %s deleted", voice_id)
        return True
