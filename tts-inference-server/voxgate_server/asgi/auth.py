"""Optional bearer-key check for every route but /health (pure ASGI, so streams are untouched)."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from voxgate_server.errors import envelope

PUBLIC_PATHS = frozenset({"/health"})


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys if k]

    def _allowed(self, header: bytes | None) -> bool:
        if not header or not header.lower().startswith(b"bearer "):
            return False
        token = header[7:].strip()
        return any(hmac.compare_digest(token, key) for key in self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self._allowed(headers.get(b"authorization")):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            envelope("Incorrect or missing API key. Send 'Authorization: Bearer <key>'.", "authentication_error",
                     code="invalid_api_key")
        ).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="voxgate"'),
        ]})
        await send({"type": "http.response.body", "body": body})
