"""API keys for WebSocket routes: the HTTP middleware only sees ``http`` scopes.

Browsers cannot set headers on a WebSocket, so the key may also come as ``?api_key=``.
"""

from __future__ import annotations

import hmac

from fastapi import WebSocket


def authorized(websocket: WebSocket, keys: list[str]) -> bool:
    if not keys:
        return True
    header = websocket.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else websocket.query_params.get("api_key", "")
    return any(hmac.compare_digest(token.encode(), k.encode()) for k in keys if k)
