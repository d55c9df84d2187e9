"""The cache key: what makes two speech requests give the same audio."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# fields with OpenAI's defaults, so {"speed": 1} and no speed are the same request
DEFAULTS: dict[str, Any] = {"response_format": "mp3", "speed": 1.0, "stream_format": "audio"}
NOT_AUDIO = ("model", "input", "voice", "user", "stream")  # keyed separately, or do not change the audio


def voice_name(voice: Any) -> str:
    if isinstance(voice, dict):
        return str(voice.get("id", json.dumps(voice, sort_keys=True)))
    return "" if voice is None else str(voice)


def cache_key(model: str, payload: dict[str, Any], voice_hash: str | None = None) -> str:
    """SHA-256 of the model, the resolved voice (and its clip's content hash when known), the
    format, speed, every generation setting (seed, temperature, instructions, ...) and the text."""
    settings = {k: v for k, v in payload.items() if k not in NOT_AUDIO}
    for k, v in DEFAULTS.items():
        settings.setdefault(k, v)
    if isinstance(settings.get("speed"), (int, float)):
        settings["speed"] = float(settings["speed"])
    blob = json.dumps({"model": model, "voice": voice_name(payload.get("voice")), "voice_hash": voice_hash,
                       "settings": settings, "text": payload.get("input")}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
