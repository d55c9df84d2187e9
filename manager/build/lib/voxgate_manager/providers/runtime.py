"""A provider as the controller sees it: nothing to start or stop, ready at once. The lifecycle
still applies (concurrency, queueing, metrics, the idle state), so a paid API is bounded like a GPU."""

from __future__ import annotations

from voxgate_manager.providers.base import Provider
from voxgate_manager.runtimes.base import Runtime


class ProviderRuntime(Runtime):
    always_ready = True

    def __init__(self, kind: str, base_url: str, provider: Provider) -> None:
        super().__init__()
        self.kind = kind
        self.base_url = base_url
        self.provider = provider

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def close(self) -> None:
        await self.provider.aclose()
