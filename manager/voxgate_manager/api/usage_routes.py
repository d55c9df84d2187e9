"""/api/admin/usage: what each key and user spent per model (requests, characters, audio seconds,
cost) from the usage database the gateway keeps (usage/store.py), with the configured limits
beside it, for the studio's admin pages. Admin role only; a user's own usage is not exposed here.

Rows of signed-in users (``user:<id>``) carry their username; a named key keeps its name from
the quotas file and an unnamed one its hash prefix, never the key itself."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request

from voxgate_manager.accounts.service import Principal
from voxgate_manager.api.common import require_admin
from voxgate_manager.errors import APIError

router = APIRouter()
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _day(value: str | None, param: str) -> str | None:
    if value is not None and not _DAY.match(value):
        raise APIError(400, f"'{param}' must be a UTC day as YYYY-MM-DD, not {value!r}.", param=param, code="invalid_value")
    return value


def _limits(gateway: Any) -> dict[str, Any]:
    data = gateway.quota.limits.data
    keep = lambda lim: {k: v for k, v in lim.model_dump(exclude={"key", "key_sha256"}).items() if v is not None}  # noqa: E731
    return {"file": bool(gateway.manager.settings.quotas_file),
            "default": keep(data.default),
            "entries": {name: keep(e) for name, e in data.keys.items()}}


@router.get("/api/admin/usage")
async def admin_usage(request: Request, key: str | None = None, since: str | None = None, until: str | None = None,
                      _: Principal = Depends(require_admin)) -> dict[str, Any]:
    services = request.app.state.app_services
    gateway = services.manager.gateway
    report = gateway.usage_report(key, _day(since, "since"), _day(until, "until"))
    names = {f"user:{u.id}": u.username for u in services.accounts.users()}
    for row in report["usage"]:
        kid = row["key_id"]
        row["who"] = names.get(kid, kid if not kid.startswith("user:") else f"{kid} (deleted)")
        row["kind"] = "user" if kid.startswith("user:") else "anonymous" if kid == "anonymous" else "key"
    return {"object": "usage", **report, "limits": _limits(gateway)}
