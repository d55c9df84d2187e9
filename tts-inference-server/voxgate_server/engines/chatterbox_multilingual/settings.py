"""Settings of the chatterbox-multilingual engine: ``VOXGATE_CHATTERBOX_MTL_*`` variables.

The same knobs as Turbo's (``ChatterboxSettings``) under their own prefix, so one server can
run both engines from different checkpoints, plus the multilingual model's own controls with
upstream's ``generate()`` defaults.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from voxgate_server.engines.chatterbox_turbo.settings import ChatterboxSettings


class MultilingualSettings(ChatterboxSettings):
    model_config = SettingsConfigDict(env_prefix="VOXGATE_CHATTERBOX_MTL_", extra="ignore")

    # Language of requests that name none (and whose voice's metadata names none we speak).
    default_language: str = "en"
    # upstream ChatterboxMultilingualTTS.generate() defaults
    temperature: float = 0.8
    top_p: float = 1.0
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repetition_penalty: float = 2.0
    cfg_weight: float = Field(0.5, ge=0.0, le=5.0)
    exaggeration: float = Field(0.5, ge=0.0, le=2.0)
