"""/api/auth/* (register, login, refresh, logout, me), /api/keys (a user's own API keys) and
/api/admin/* (users and everyone's keys; admin role)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from voxgate_manager.accounts.service import AuthError, Principal
from voxgate_manager.api.common import api_error, client_ip, parse_body, require_admin, require_user
from voxgate_manager.errors import APIError

router = APIRouter()


class Credentials(BaseModel):
    model_config = ConfigDict(extra="ignore")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutBody(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=200)


class KeyBody(BaseModel):
    name: str = Field(default="key", max_length=100)


class NewUser(Credentials):
    role: str = "user"


class UserPatch(BaseModel):
    role: str | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


def _services(request: Request) -> Any:
    return request.app.state.app_services


def _ip_limit(request: Request) -> None:
    """Per client address, across all auth routes: a flood from one address is cut off early."""
    wait = _services(request).ip_window.hit(client_ip(request), time.monotonic())
    if wait:
        raise APIError(429, "Too many sign-in requests from this address; try again later.", code="rate_limited",
                       headers={"Retry-After": str(int(wait) + 1)})


async def _call(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except AuthError as exc:
        raise api_error(exc) from None


@router.post("/api/auth/register", status_code=201)
async def register(request: Request) -> dict[str, Any]:
    services = _services(request)
    if not services.settings.allow_register:
        raise APIError(403, "Registration is turned off; ask an admin for an account.", code="registration_disabled")
    _ip_limit(request)
    body = await parse_body(request, Credentials)
    user = await _call(services.accounts.create_user, body.username, body.password, "user")
    return await _call(services.accounts.start_session, user)


@router.post("/api/auth/login")
async def login(request: Request) -> dict[str, Any]:
    services = _services(request)
    _ip_limit(request)
    body = await parse_body(request, Credentials)
    account = body.username.strip().lower()
    now = time.monotonic()
    locked = services.lockout.locked_for(account, now)
    if locked:
        raise APIError(429, f"Too many failed sign-ins for this account; try again in {int(locked) + 1} s.",
                       code="account_locked", headers={"Retry-After": str(int(locked) + 1)})
    user = await asyncio.to_thread(services.accounts.check_password, body.username, body.password)
    if user is None:
        lock = services.lockout.failed(account, time.monotonic())
        if lock:
            raise APIError(429, f"Too many failed sign-ins for this account; try again in {int(lock) + 1} s.",
                           code="account_locked", headers={"Retry-After": str(int(lock) + 1)})
        raise APIError(401, "Wrong username or password.", code="invalid_credentials")
    services.lockout.succeeded(account)
    return await _call(services.accounts.start_session, user)


@router.post("/api/auth/refresh")
async def refresh(request: Request) -> dict[str, Any]:
    _ip_limit(request)
    body = await parse_body(request, RefreshBody)
    return await _call(_services(request).accounts.refresh, body.refresh_token)


@router.post("/api/auth/logout")
async def logout(request: Request) -> dict[str, Any]:
    """Ends the session of the access token sent, or of the refresh token in the body."""
    services = _services(request)
    body = await parse_body(request, LogoutBody) if await request.body() else LogoutBody()
    from voxgate_manager.api.common import bearer

    principal = services.accounts.principal(bearer(request)) if bearer(request) else None
    if principal is not None and principal.session:
        services.accounts.logout(principal.session)
    elif body.refresh_token:
        services.accounts.logout_by_refresh(body.refresh_token)
    else:
        raise APIError(401, "Send the access token or the refresh token of the session to end.", code="invalid_token")
    return {"logged_out": True}


@router.get("/api/auth/me")
async def me(principal: Principal = Depends(require_user)) -> dict[str, Any]:
    return {**principal.user.public(), "via": "api_key" if principal.key_id else "session"}


@router.get("/api/auth/config")
async def auth_config(request: Request) -> dict[str, Any]:
    """What the sign-in page needs to know before anyone signs in."""
    s = _services(request).settings
    return {"registration": s.allow_register, "session_ttl_s": s.session_ttl_s, "access_token_ttl_s": s.access_token_ttl_s}


# -- a user's own API keys ----------------------------------------------------------------------

@router.get("/api/keys")
async def list_keys(request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    return {"object": "list", "data": _services(request).accounts.keys(principal.user.id)}


@router.post("/api/keys", status_code=201)
async def create_key(request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    body = await parse_body(request, KeyBody) if await request.body() else KeyBody()
    return await _call(_services(request).accounts.create_key, principal.user, body.name)


@router.delete("/api/keys/{key_id}")
async def revoke_key(key_id: str, request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    return await _call(_services(request).accounts.revoke_key, key_id, principal.user.id)


# -- admin --------------------------------------------------------------------------------------

@router.get("/api/admin/users")
async def admin_users(request: Request, _: Principal = Depends(require_admin)) -> dict[str, Any]:
    return {"object": "list", "data": [u.public() for u in _services(request).accounts.users()]}


@router.post("/api/admin/users", status_code=201)
async def admin_create_user(request: Request, _: Principal = Depends(require_admin)) -> dict[str, Any]:
    body = await parse_body(request, NewUser)
    user = await _call(_services(request).accounts.create_user, body.username, body.password, body.role)
    return user.public()


@router.patch("/api/admin/users/{user_id}")
async def admin_update_user(user_id: int, request: Request, _: Principal = Depends(require_admin)) -> dict[str, Any]:
    body = await parse_body(request, UserPatch)
    user = await _call(_services(request).accounts.update_user, user_id, role=body.role, disabled=body.disabled,
                       password=body.password)
    return user.public()


@router.delete("/api/admin/users/{user_id}")
async def admin_delete_user(user_id: int, request: Request, _: Principal = Depends(require_admin)) -> dict[str, Any]:
    await _call(_services(request).accounts.delete_user, user_id)
    return {"id": user_id, "deleted": True}


@router.get("/api/admin/keys")
async def admin_keys(request: Request, _: Principal = Depends(require_admin)) -> dict[str, Any]:
    return {"object": "list", "data": _services(request).accounts.keys(None)}


@router.delete("/api/admin/keys/{key_id}")
async def admin_revoke_key(key_id: str, request: Request, _: Principal = Depends(require_admin)) -> dict[str, Any]:
    return await _call(_services(request).accounts.revoke_key, key_id, None)
