"""Serves the studio's page and static files with a Content-Security-Policy that allows only the
manager itself (and ``blob:`` audio, for clips played from memory)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from voxgate_manager.errors import APIError

router = APIRouter()

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY", "Permissions-Policy": "microphone=(self), camera=(), geolocation=()"}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}
_STATIC = resources.files("voxgate_manager.studio").joinpath("static")


def _file(name: str, cache: str) -> Response:
    if "/" in name or name.startswith(".") or "." not in name:
        raise APIError(404, "Not found.")
    f = _STATIC.joinpath(name)
    if not f.is_file():
        raise APIError(404, "Not found.")
    media = _TYPES.get(name[name.rfind("."):], "application/octet-stream")
    return Response(f.read_bytes(), media_type=media, headers={**SECURITY_HEADERS, "Cache-Control": cache})


@router.get("/", include_in_schema=False)
async def index() -> Response:
    return _file("index.html", "no-cache")


@router.get("/studio/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    return _file(name, "no-cache")
