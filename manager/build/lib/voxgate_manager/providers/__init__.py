"""Models that are someone else's API (OpenAI, ElevenLabs, any OpenAI-shaped server)."""

from __future__ import annotations

from voxgate_manager.providers.base import Provider
from voxgate_manager.providers.config import ElevenLabsProvider, OpenAICompatibleProvider, OpenAIProvider


def make_provider(model_id: str, cfg: object) -> Provider | None:
    """The provider for a models.json runtime entry, or None if it is not a provider."""
    if isinstance(cfg, ElevenLabsProvider):
        from voxgate_manager.providers.elevenlabs import ElevenLabsSpeech

        return ElevenLabsSpeech(model_id, cfg)
    if isinstance(cfg, (OpenAIProvider, OpenAICompatibleProvider)):
        from voxgate_manager.providers.openai import OpenAISpeech

        return OpenAISpeech(model_id, cfg)
    return None
