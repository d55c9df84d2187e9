"""What the manager asks a voxgate-server about parking, over HTTP: the same calls for every
runtime (docker, process, remote), since parking is the server's own admin route.

- ``capabilities``: ``GET /v1/models/{model}``: whether the server's engine can park and how
  many requests it synthesizes at once (its batch), read once the model is ready;
- ``park`` / ``wake``: ``POST /admin/park?model=`` and ``/admin/wake?model=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx


@dataclass(frozen=True)
class ServerCaps:
    can_park: bool = False
    park_reason: str | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class ParkOutcome:
    ok: bool
    message: str = ""
    supported: bool = True  # False: the server cannot park at all (stop instead from now on)
    seconds: float | None = None  # the server's own park_s / wake_s


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def capabilities(http: httpx.AsyncClient, base_url: str, model: str, api_key: str | None,
                       timeout_s: float = 5.0) -> ServerCaps:
    """Never raises: a server that does not answer (an older voxgate, another OpenAI server)
    is taken as one that cannot park and does not say its concurrency."""
    try:
        r = await http.get(f"{base_url}/v1/models/{quote(model, safe='')}", headers=_headers(api_key), timeout=timeout_s)
        caps: dict[str, Any] = (r.json().get("capabilities") or {}) if r.status_code == 200 else {}
    except (httpx.HTTPError, ValueError, AttributeError):
        return ServerCaps(park_reason="the server's /v1/models did not answer")
    park = caps.get("park") if isinstance(caps.get("park"), dict) else {}
    concurrency = caps.get("concurrency")
    return ServerCaps(can_park=bool(park.get("supported")),
                      park_reason=park.get("reason") or (None if park else "the server does not advertise parking"),
                      concurrency=concurrency if isinstance(concurrency, int) and concurrency >= 1 else None)


async def _call(http: httpx.AsyncClient, url: str, api_key: str | None, timeout_s: float, key: str) -> ParkOutcome:
    try:
        r = await http.post(url, headers=_headers(api_key), timeout=timeout_s)
    except httpx.HTTPError as exc:
        return ParkOutcome(False, f"{type(exc).__name__}: {exc}")
    try:
        body = r.json()
    except ValueError:
        body = {}
    if r.status_code == 200:
        secs = [e.get(key) for e in (body.get("engines") or {}).values() if isinstance(e, dict)]
        return ParkOutcome(True, seconds=max((s for s in secs if isinstance(s, (int, float))), default=None))
    error = body.get("error") if isinstance(body, dict) else None
    message = (error or {}).get("message") if isinstance(error, dict) else None
    code = (error or {}).get("code") if isinstance(error, dict) else None
    unsupported = r.status_code == 404 or code == "park_not_supported"
    return ParkOutcome(False, message or f"HTTP {r.status_code}", supported=not unsupported)


async def park(http: httpx.AsyncClient, base_url: str, model: str, api_key: str | None, timeout_s: float) -> ParkOutcome:
    return await _call(http, f"{base_url}/admin/park?model={quote(model, safe='')}", api_key, timeout_s, "park_s")


async def wake(http: httpx.AsyncClient, base_url: str, model: str, api_key: str | None, timeout_s: float) -> ParkOutcome:
    return await _call(http, f"{base_url}/admin/wake?model={quote(model, safe='')}", api_key, timeout_s, "wake_s")
