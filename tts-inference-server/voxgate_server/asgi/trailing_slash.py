"""Serve ``/v1/audio/speech/`` exactly as ``/v1/audio/speech`` (pure ASGI, streams untouched).

Starlette answers a trailing slash with a 307 redirect and no envelope; clients configured with
a pasted URL (Home Assistant's full-URL field, SillyTavern's endpoint) send one, and many do not
follow a redirect of a POST. Stripping it before routing and auth gives them the same answer.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class TrailingSlashMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = dict(scope)
            scope["path"] = path.rstrip("/") or "/"
            raw = scope.get("raw_path")
            if raw:
                scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)
