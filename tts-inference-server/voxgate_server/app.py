"""The FastAPI application: routers, errors, auth, and engine loading at start-up."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from voxgate_server import __version__
from voxgate_server.asgi.auth import APIKeyMiddleware
from voxgate_server.asgi.body_timeout import BodyTimeoutMiddleware
from voxgate_server.asgi.trailing_slash import TrailingSlashMiddleware
from voxgate_server.engines.base import Engine
from voxgate_server.errors import install_error_handlers
from voxgate_server.metrics import ServerMetrics
from voxgate_server.routes import admin, catalog, ops, speech
from voxgate_server.runtime import Runtime
from voxgate_server.settings import Settings

log = logging.getLogger("voxgate")

# Routers contributed by optional modules (present when their feature is installed).
_OPTIONAL_ROUTERS = ("voxgate_server.routes.voice_library", "voxgate_server.routes.ws",
                     "voxgate_server.routes.realtimetts")


def create_app(settings: Settings | None = None, engines: list[Engine] | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServerMetrics()
    runtime = Runtime(settings, metrics, engines)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.start_loading()
        yield
        await runtime.close()

    app = FastAPI(title="voxgate", version=__version__, lifespan=lifespan, redirect_slashes=False)
    app.state.runtime = runtime
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(ops.router)
    app.include_router(catalog.router)
    app.include_router(speech.router)
    app.include_router(admin.router)
    for name in _OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        app.include_router(module.router)
        if hasattr(module, "install"):  # start-up state of an optional surface (realtimetts)
            module.install(app)
    if settings.api_keys:
        app.add_middleware(APIKeyMiddleware, keys=settings.api_keys)
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s)
    app.add_middleware(TrailingSlashMiddleware)  # outermost: auth and routing see the clean path
    return app
