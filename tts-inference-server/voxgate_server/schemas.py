"""The request body of POST /v1/audio/speech: OpenAI's fields plus optional generation controls."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]

GENERATION_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "max_duration_s", "language",
                     "min_p", "cfg_weight", "exaggeration")


class VoiceObject(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1)


class SpeechRequest(BaseModel):
    # Unknown fields are ignored, as many OpenAI-compatible clients send extras.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str
    voice: str | VoiceObject
    instructions: str | None = Field(default=None, max_length=4096)
    response_format: ResponseFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"

    # Optional generation controls; each engine range-checks those it supports.
    temperature: float | None = None
    top_p: float | None = None
    top_k: StrictInt | None = None
    repetition_penalty: float | None = None
    seed: StrictInt | None = None
    max_duration_s: float | None = None
    # The language to read ``input`` in, for multilingual engines (kokoro); default: the voice's.
    language: str | None = Field(default=None, min_length=1, max_length=16)
    # chatterbox-multilingual's own controls (classifier-free guidance, emotion, min-p sampling)
    min_p: float | None = None
    cfg_weight: float | None = None
    exaggeration: float | None = None
    # "word": the audio comes with word timings (JSON, or SSE timestamps events); see timing.py
    timestamps: Literal["none", "word"] = "none"

    @property
    def voice_id(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceObject) else self.voice

    def generation_options(self) -> dict[str, float | int | str]:
        return {name: getattr(self, name) for name in GENERATION_FIELDS if getattr(self, name) is not None}
