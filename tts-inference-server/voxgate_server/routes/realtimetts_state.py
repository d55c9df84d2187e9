"""What the RealtimeTTS API persists: the server's default engine and each engine's current voice.

Kept in one small JSON file (``VOXGATE_RTTS_STATE_FILE``, default ``<voices_dir>/.realtimetts.json``;
the voice library skips dotfiles), written atomically, read at start-up.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("voxgate.realtimetts")


class RealtimeTTSSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOXGATE_RTTS_", extra="ignore")

    state_file: Path | None = None


class SwitchState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.engine: str | None = None
        self.voices: dict[str, str] = {}
        self._read()

    def _read(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            log.warning("ignoring unreadable RealtimeTTS state %s", self.path)
            return
        if isinstance(data.get("engine"), str):
            self.engine = data["engine"]
        if isinstance(data.get("voices"), dict):
            self.voices = {str(k): str(v) for k, v in data["voices"].items()}

    def save(self) -> None:
        with self._lock:
            payload: dict[str, Any] = {"engine": self.engine, "voices": self.voices}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
            os.replace(tmp, self.path)
