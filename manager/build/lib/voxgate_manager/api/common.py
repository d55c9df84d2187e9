"""What every application-API route shares: reading a JSON body into a pydantic model with
OpenAI-style errors, and finding who is asking."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from voxgate_manager.accounts.service import AuthError, Principal
from voxgate_manager.errors import APIError

M = TypeVar("M", bound=BaseModel)
JSON_MAX_BYTES = 1024 * 1024


def bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "").strip()


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def api_error(exc: AuthError) -> APIError:
    headers = {"Retry-After": str(max(1, int(exc.retry_after_s + 0.999)))} if exc.retry_after_s else None
    return APIError(exc.status, exc.message, code=exc.code, param=exc.param, headers=headers)


async def parse_body(request: Request, model: type[M], limit: int = JSON_MAX_BYTES) -> M:
    """The body as ``model``; a bad body is a 400 naming the field, never FastAPI's 422 shape."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"Request body is larger than {limit} bytes.", code="request_too_large")
    raw = await request.body()
    if len(raw) > limit:
        raise APIError(413, f"Request body is larger than {limit} bytes.", code="request_too_large")
    try:
        data: Any = json.loads(raw or b"null")
    except ValueError:
        raise APIError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_request")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err.get("loc", ())) or None
        kind = err.get("type", "")
        code = "missing_required_parameter" if kind == "missing" else "invalid_value"
        what = "Missing required parameter" if kind == "missing" else "Invalid value for"
        raise APIError(400, f"{what} '{param}': {err.get('msg', 'invalid')}.", param=param, code=code) from None


def require_user(request: Request) -> Principal:
    """The signed-in user (access token) or the owner of a per-user API key; else 401."""
    services = request.app.state.app_services
    token = bearer(request)
    principal = services.accounts.principal(token) if token else None
    if principal is None:
        raise APIError(401, "Sign in first: send 'Authorization: Bearer <access token or API key>'."
                       if not token else "The access token or API key is not valid (expired, revoked or unknown).",
                       code="invalid_api_key" if not token or token.startswith("vg-") else "invalid_token")
    return principal


def require_admin(request: Request) -> Principal:
    principal = require_user(request)
    if not principal.user.is_admin:
        raise APIError(403, "This needs the admin role.", code="forbidden")
    return principal
