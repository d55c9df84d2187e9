"""What models.json says about a model's voices: voices declared before the model ever ran (so the
catalog and Home Assistant's voice list are right on a fresh install), and voice presets.

A preset is a voice alias carrying a base voice plus generation settings. Clients that forward only
a fixed set of fields (SillyTavern sends ``{model, input, voice, response_format, speed}``) can then
reach every setting by naming the preset as their voice.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DeclaredVoice(BaseModel):
    """A voice the model offers, as the operator knows it (the server's own list wins once seen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    name: str | None = None
    language: str | None = None  # BCP 47, e.g. "en-US"
    description: str | None = None


class VoicePreset(BaseModel):
    """``voice`` plus the settings that replace the request's own. Unknown fields (an engine's
    extras, e.g. ``exaggeration``) are passed on as they are: the model server checks them."""

    model_config = ConfigDict(extra="allow", frozen=True)

    voice: str = Field(min_length=1)
    description: str | None = None
    language: str | None = None
    speed: float | None = Field(default=None, ge=0.25, le=4.0)
    instructions: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None

    def settings(self) -> dict[str, Any]:
        """The request fields this preset sets (everything but its own descriptive fields)."""
        data = self.model_dump(exclude_none=True)
        for own in ("voice", "description", "language"):
            data.pop(own, None)
        return data


def apply_voice_preset(presets: dict[str, VoicePreset], payload: dict[str, Any]) -> str | None:
    """Rewrite a speech body in place when its ``voice`` names a preset; returns the preset's name.

    The preset's settings win over the request's: the clients that need presets cannot leave a
    field out (SillyTavern always sends ``speed``), and a client that wants its own settings can
    name the base voice instead."""
    voice = payload.get("voice")
    if not isinstance(voice, str) or not presets:
        return None
    preset = presets.get(voice)
    if preset is None:
        return None
    payload["voice"] = preset.voice
    payload.update(preset.settings())
    return voice
