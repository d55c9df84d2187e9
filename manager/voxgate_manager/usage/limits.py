"""Per-key limits from a JSON file (VOXGATE_MANAGER_QUOTAS_FILE):

    {"default": {"chars_per_day": 100000, "requests_per_minute": 30, "max_seconds": 300},
     "keys": {"alice": {"key": "sk-alice", "chars_per_month": 2000000},
              "kiosk": {"key_sha256": "<hex>", "requests_per_minute": 5}}}

A key's own limits are laid over the default ones; a limit left out (or null) is no limit. Keys
are named so usage reports show names, never keys; ``key_sha256`` keeps the key itself out of
the file.

A signed-in user of the application API (studio, jobs) counts under ``user:<id>`` (their account
id, which never changes with a rename); an entry of that name without a key gives that user their
own limits, else the default ones apply."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chars_per_day: int | None = Field(default=None, ge=0)
    chars_per_month: int | None = Field(default=None, ge=0)
    audio_seconds_per_day: float | None = Field(default=None, ge=0)
    audio_seconds_per_month: float | None = Field(default=None, ge=0)
    requests_per_minute: int | None = Field(default=None, ge=0)
    max_seconds: float | None = Field(default=None, gt=0)  # longest audio one request may ask for (estimated)


class KeyEntry(Limits):
    key: str | None = None
    key_sha256: str | None = None


class QuotaFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: Limits = Field(default_factory=Limits)
    keys: dict[str, KeyEntry] = Field(default_factory=dict)


def key_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyLimits:
    """Maps a request's key to (name, effective limits)."""

    def __init__(self, data: QuotaFile | None = None) -> None:
        self.data = data or QuotaFile()
        self._by_hash: dict[str, tuple[str, Limits]] = {}
        self._by_name: dict[str, Limits] = {}
        base = self.data.default.model_dump()
        for name, entry in self.data.keys.items():
            own = {k: v for k, v in entry.model_dump(exclude={"key", "key_sha256"}).items() if v is not None}
            limits = Limits(**{**base, **own})
            self._by_name[name] = limits
            digest = entry.key_sha256 or (key_hash(entry.key) if entry.key else None)
            if digest:
                self._by_hash[digest.lower()] = (name, limits)

    def for_token(self, token: str | None) -> tuple[str, Limits]:
        if not token:
            return "anonymous", self.data.default
        digest = key_hash(token)
        found = self._by_hash.get(digest)
        if found is not None:
            return found
        return "key-" + digest[:12], self.data.default  # an unnamed key: its hash prefix, never the key


    def for_identity(self, name: str) -> tuple[str, Limits]:
        """Limits of an identity the manager vouches for itself (``user:<id>``), not a key."""
        return name, self._by_name.get(name, self.data.default)


def load_limits(path: str | None) -> KeyLimits:
    if not path:
        return KeyLimits()
    try:
        raw: Any = json.loads(Path(path).read_text(encoding="utf-8"))
        return KeyLimits(QuotaFile.model_validate(raw))
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()[:5])
        raise ValueError(f"{path}: {where}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
