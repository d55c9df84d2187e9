"""Admin API, on its own listener (loopback by default): status, load, unload, reload."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request

from voxgate_manager.config import ConfigError
from voxgate_manager.errors import APIError, install_error_handlers
from voxgate_manager.lifecycle.controller import Rejected
from voxgate_manager.manager import Manager


def create_admin_app(manager: Manager) -> FastAPI:
    app = FastAPI(title="voxgate-manager admin", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    key = manager.settings.admin_key

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        if key:
            auth = request.headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), key.encode()):
                from voxgate_manager.errors import error_response

                return error_response(APIError(401, "Incorrect admin key.", code="invalid_api_key"))
        return await call_next(request)

    def ctl_or_404(model_id: str) -> Any:
        ctl = manager.resolve(model_id)
        if ctl is None:
            raise APIError(404, f"The model '{model_id}' does not exist.", code="model_not_found")
        return ctl

    @app.get("/admin/models")
    async def status(all: bool = True) -> dict[str, Any]:
        models = manager.status()
        if not all:
            models = [m for m in models if m["state"] != "stopped"]
        return {"models": models}

    @app.get("/admin/models/{model_id}")
    async def one(model_id: str) -> dict[str, Any]:
        return ctl_or_404(model_id).status()

    @app.post("/admin/models/{model_id}/load")
    async def load(model_id: str) -> dict[str, Any]:
        ctl = ctl_or_404(model_id)
        try:
            await ctl.load()
        except Rejected as exc:
            raise APIError(exc.status, exc.message, code=exc.code, headers={"Retry-After": str(exc.retry_after_s)}) from None
        return ctl.status()

    @app.post("/admin/models/{model_id}/unload")
    async def unload(model_id: str) -> dict[str, Any]:
        ctl = ctl_or_404(model_id)
        await ctl.unload()
        return ctl.status()

    @app.post("/admin/models/{model_id}/park")
    async def park(model_id: str) -> dict[str, Any]:
        """Give the model's GPU memory back, keeping its server running (when it can park)."""
        ctl = ctl_or_404(model_id)
        try:
            await ctl.park()
        except Rejected as exc:
            raise APIError(exc.status, exc.message, code=exc.code) from None
        return ctl.status()

    @app.post("/admin/models/{model_id}/wake")
    async def wake(model_id: str) -> dict[str, Any]:
        ctl = ctl_or_404(model_id)
        await ctl.wake()
        return ctl.status()

    @app.post("/admin/reload")
    async def reload() -> dict[str, Any]:
        try:
            manager.gateway.reload_limits()
        except ValueError as exc:
            raise APIError(400, f"quotas not reloaded: {exc}", code="invalid_config") from None
        try:
            return await manager.reload()
        except ConfigError as exc:
            raise APIError(400, f"models.json not reloaded: {exc}", code="invalid_config") from None

    # -- cache, usage, the speech flag (voxgate_manager/routing/gateway.py) -------------------

    @app.get("/admin/cache")
    async def cache_status(model: str | None = None, limit: int = 100) -> dict[str, Any]:
        return manager.gateway.cache_status(model, limit)

    @app.delete("/admin/cache")
    async def cache_purge(model: str | None = None, key: str | None = None) -> dict[str, Any]:
        return manager.gateway.cache_purge(model, key)

    @app.get("/admin/usage")
    async def usage(key: str | None = None, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        return manager.gateway.usage_report(key, since, until)

    @app.get("/admin/speech")
    async def speech_flag() -> dict[str, Any]:
        return {"enabled": manager.gateway.speech_enabled}

    @app.post("/admin/speech")
    async def set_speech_flag(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise APIError(400, 'expected {"enabled": true|false}', code="invalid_request", param="enabled")
        manager.gateway.speech_enabled = body["enabled"]
        return {"enabled": manager.gateway.speech_enabled}

    return app
