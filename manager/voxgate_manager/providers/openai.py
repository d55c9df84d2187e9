"""OpenAI's /v1/audio/speech, and any server shaped like it (openai-compatible: AllTalk, LocalAI,
another voxgate). Every field of the body is passed through as it came; the answer (audio or SSE)
is relayed chunk by chunk as the provider sends it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voxgate_manager.providers.base import Provider, ProviderAnswer, ProviderStreamError
from voxgate_manager.providers.config import OpenAICompatibleProvider, OpenAIProvider
from voxgate_manager.providers.http import json_message, make_client, open_stream
from voxgate_manager.providers.keys import resolve_key


class OpenAISpeech(Provider):
    def __init__(self, model_id: str, cfg: OpenAIProvider | OpenAICompatibleProvider) -> None:
        self.cfg = cfg
        self.name = "OpenAI" if cfg.type == "openai" else f"openai-compatible ({cfg.base_url})"
        self.model_id = model_id
        self.client = make_client(cfg)
        self.url = cfg.base_url + "/audio/speech"

    def _key(self) -> str | None:
        return resolve_key(self.cfg.api_key_env, self.cfg.api_key_file)  # read per call: a rotated secret file is picked up

    async def speech(self, payload: dict[str, Any]) -> ProviderAnswer:
        key = self._key()
        headers = {"content-type": "application/json", "accept": "*/*"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        request = self.client.build_request("POST", self.url, content=json.dumps(payload).encode(), headers=headers)
        resp = await open_stream(self.client, request, self.cfg, self.name, key, lambda r, body: json_message(body))

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.aiter_raw():
                    if chunk:
                        yield chunk
            except httpx.HTTPError as exc:
                raise ProviderStreamError(f"provider {self.name} broke off mid-answer: {type(exc).__name__}") from None

        passed = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "content-length")}
        return ProviderAnswer(resp.status_code, resp.headers.get("content-type", "application/octet-stream"), chunks(),
                              resp.aclose, passed)

    async def aclose(self) -> None:
        await self.client.aclose()
