"""The small interface every provider (a model that is someone else's API) implements.

A provider knows its API's wire format and nothing of the manager's HTTP surface: it takes the
OpenAI-shaped speech request and returns an answer whose body is read chunk by chunk. Everything
that can go wrong before the first audio byte is a ProviderError (which the routing may answer
from the next model in a fallback chain); after it, a ProviderStreamError (the client connection
is aborted: never a silently short file)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


class ProviderError(Exception):
    """The provider could not answer; ``status`` is what the client gets, ``message`` says which
    provider said what (never the key)."""

    def __init__(self, provider: str, status: int, message: str, code: str, retry_after_s: int | None = None,
                 fallback: bool = True) -> None:
        super().__init__(message)
        self.provider, self.status, self.message, self.code = provider, status, message, code
        self.retry_after_s = retry_after_s
        self.fallback = fallback  # whether another model may answer instead (not for the client's own mistakes)


class ProviderStreamError(Exception):
    """The provider broke off after audio was sent."""


@dataclass
class ProviderAnswer:
    status: int
    content_type: str
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]
    headers: dict[str, str] = field(default_factory=dict)


class Provider(ABC):
    """One configured provider model."""

    name: str = "provider"

    @abstractmethod
    async def speech(self, payload: dict[str, Any]) -> ProviderAnswer:
        """Open the answer to an OpenAI-shaped /v1/audio/speech body (``model`` already the
        provider's model name). Raises ProviderError before any audio is produced."""

    async def voices(self) -> list[dict[str, Any]] | None:
        """The provider's voice list in /v1/audio/voices shape, if it has one."""
        return None

    async def aclose(self) -> None:
        """The manager exits."""
