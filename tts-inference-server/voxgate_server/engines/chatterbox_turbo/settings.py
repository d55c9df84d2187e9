"""Settings of the chatterbox-turbo engine: ``VOXGATE_CHATTERBOX_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from voxgate_server.settings import _parse_mapping

# OpenAI voice name -> voice id of this engine. "default" is the checkpoint's built-in voice;
# a library voice whose id equals the OpenAI name (an upload named "nova") wins over this
# table, and VOXGATE_CHATTERBOX_VOICE_MAP overrides single entries ("alloy=my-voice,...").
DEFAULT_OPENAI_VOICE_MAP: dict[str, str] = {
    name: "default"
    for name in ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                 "shimmer", "verse", "marin", "cedar")
}


class ChatterboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOXGATE_CHATTERBOX_", extra="ignore")

    # A local checkpoint folder (from_local); unset = from_pretrained via the Hugging Face cache.
    checkpoint_dir: Path | None = None
    # Token for gated/private downloads; HF_TOKEN in the environment works too.
    hf_token: SecretStr | None = None
    device: Literal["auto", "cuda", "cpu"] = "auto"
    # Compute dtype of the T3 language model; S3Gen and the voice encoder stay float32.
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # Synthesize one token at start-up, before /health reports ready.
    warmup: bool = True
    # Resemble's Perth watermark on every output (imperceptible; detectable with perth).
    watermark: bool = True

    # Generated speech per request when the request sets no max_duration_s, and the most a
    # request may ask for; a runaway generation always ends at one of these.
    max_duration_s: float = Field(120.0, gt=0)
    max_duration_cap_s: float = Field(600.0, gt=0)
    # Speech generated for one text chunk at most (Turbo degrades past ~30 s; 40 s = the
    # library's own 1000-token bound).
    chunk_max_duration_s: float = Field(40.0, gt=0)
    # Characters per text chunk the server hands over (Turbo degrades past ~300).
    chunk_chars: int = Field(300, ge=50, le=1000)

    # Voice conditionings kept in memory (LRU, keyed by the clip's sha256).
    voice_cache_size: int = Field(16, ge=1)
    # The voice used when a request names none; "default" = the checkpoint's conds.pt.
    default_voice: str = "default"
    voice_map: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Loudness-normalise reference clips to -27 LUFS before conditioning (as upstream does).
    norm_loudness: bool = True

    # Sampling defaults (upstream's generate() defaults); requests may override them.
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 1000
    repetition_penalty: float = 1.2

    @field_validator("voice_map", mode="before")
    @classmethod
    def _voice_map(cls, v: Any) -> dict[str, str]:
        return _parse_mapping(v)

    def openai_voice_map(self) -> dict[str, str]:
        table = dict(DEFAULT_OPENAI_VOICE_MAP)
        table.update(self.voice_map)
        return table
