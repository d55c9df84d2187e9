"""models.json runtime entries for models that are someone else's API (no process, no container).

Kept apart from config.py so the provider package owns its schema; config.py only adds these to
its runtime union. Keys are never written in models.json: ``api_key_env`` names an environment
variable, and ``<that name>_FILE`` (or ``api_key_file``) a file holding the key (Docker secrets)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _http_base_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return v.rstrip("/")


# an http(s) URL without its trailing slash: a provider's, or a remote runtime's (config.py)
BaseUrl = Annotated[str, AfterValidator(_http_base_url)]


class _ProviderBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: BaseUrl
    api_key_env: str | None = None
    api_key_file: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)  # connect + first byte, and the gap between chunks
    retries: int = Field(default=2, ge=0, le=10)  # extra attempts on connect errors, 429 and 5xx
    backoff_s: float = Field(default=0.5, ge=0)  # first retry's delay; doubles, with jitter
    backoff_max_s: float = Field(default=8.0, ge=0)


class OpenAIProvider(_ProviderBase):
    type: Literal["openai"]
    base_url: BaseUrl = "https://api.openai.com/v1"
    api_key_env: str | None = "OPENAI_API_KEY"


class OpenAICompatibleProvider(_ProviderBase):
    """AllTalk, LocalAI, another voxgate or any server with OpenAI's /audio/speech (base_url ends in /v1)."""

    type: Literal["openai-compatible"]


class ElevenLabsProvider(_ProviderBase):
    type: Literal["elevenlabs"]
    base_url: BaseUrl = "https://api.elevenlabs.io"
    api_key_env: str | None = "ELEVENLABS_API_KEY"
    model_id: str = "eleven_multilingual_v2"  # the body's ``model`` when it names no ElevenLabs model
    default_voice: str | None = None  # a voice name or id used when the request's voice is unknown
    voices: dict[str, str] = Field(default_factory=dict)  # our voice names -> ElevenLabs voice names or ids
    max_chars: int = Field(default=5000, ge=100, le=100_000)  # the API's per-request text limit
    voices_ttl_s: float = Field(default=600.0, ge=0)  # how long the fetched voice list is trusted


PROVIDER_TYPES = ("openai", "openai-compatible", "elevenlabs")
ProviderRuntime = OpenAIProvider | OpenAICompatibleProvider | ElevenLabsProvider


class Price(BaseModel):
    """What a model costs, as data with where it came from (prices change; the date says when seen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_1k_chars: float = Field(default=0.0, ge=0)
    per_minute: float = Field(default=0.0, ge=0)  # of audio produced
    currency: str = "USD"
    source: str  # a URL or a note (e.g. "electricity estimate")
    as_of: str  # ISO date the price was read

    def estimate(self, chars: int, audio_s: float | None) -> float:
        return chars / 1000.0 * self.per_1k_chars + (audio_s or 0.0) / 60.0 * self.per_minute
