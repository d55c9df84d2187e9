"""OpenAI's /v1/audio/speech, and any server shaped like it (openai-compatible: AllTalk, LocalAI,
another voxgate). Every field of the body is passed through as it came; the answer (audio or SSE)
is relayed chunk by chunk as the provider sends it. Sent on the proxy's lean client (h1.py)."""

from __future__ import annotations

import json
from typing import Any

from voxgate_manager.providers.base import Provider, ProviderAnswer
from voxgate_manager.providers.config import OpenAICompatibleProvider, OpenAIProvider
from voxgate_manager.providers.fastcall import body_chunks, open_h1
from voxgate_manager.providers.http import json_message
from voxgate_manager.providers.keys import resolve_key
from voxgate_manager.transport import h1

PASSED = (b"content-type", b"content-length")


class OpenAISpeech(Provider):
    def __init__(self, model_id: str, cfg: OpenAIProvider | OpenAICompatibleProvider, pool: h1.Pool | None = None) -> None:
        self.cfg = cfg
        self.name = "OpenAI" if cfg.type == "openai" else f"openai-compatible ({cfg.base_url})"
        self.model_id = model_id
        self.pool = pool or h1.Pool(connect_timeout=min(cfg.timeout_s, 10.0), write_timeout=cfg.timeout_s)
        self._own_pool = pool is None

    def _key(self) -> str | None:
        return resolve_key(self.cfg.api_key_env, self.cfg.api_key_file)  # read per call: a rotated secret file is picked up

    async def speech(self, payload: dict[str, Any]) -> ProviderAnswer:
        key = self._key()
        headers: h1.Headers = [(b"content-type", b"application/json"), (b"accept", b"*/*")]
        if key:
            headers.append((b"authorization", b"Bearer " + key.encode()))
        resp = await open_h1(self.pool, self.cfg, self.name, key, self.cfg.base_url, "/audio/speech", headers,
                             json.dumps(payload).encode(), json_message)
        passed = {k.decode(): v.decode("latin-1") for k, v in resp.headers if k in PASSED}

        async def close() -> None:
            resp.release()

        return ProviderAnswer(resp.status, passed.get("content-type", "application/octet-stream"),
                              body_chunks(resp, self.cfg, self.name), close, passed)

    async def aclose(self) -> None:
        if self._own_pool:
            self.pool.close()
