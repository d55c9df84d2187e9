"""GET /health (readiness an external manager can trust) and GET /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from voxgate_server import __version__
from voxgate_server.runtime import EngineState, Runtime

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    engines = {}
    for slot in runtime.slots.values():
        info: dict[str, object] = {"state": slot.state.value}
        if slot.error:
            info["error"] = slot.error
        if slot.worker is not None:
            info.update(active=slot.worker.active, queued=slot.worker.queue_depth, concurrency=slot.worker.concurrency)
        if slot.load_seconds is not None:
            info["load_seconds"] = round(slot.load_seconds, 3)
        if slot.park is not None:
            info["park"] = slot.park.as_dict()
        if slot.state is EngineState.READY and (warmup := slot.engine.warmup_status()) is not None:
            info["warmup"] = warmup  # ready and serving, at full speed once its state is "done"
        engines[slot.id] = info
    if runtime.ready:
        status, code = "ok", 200
    elif any(s.state is EngineState.LOADING for s in runtime.slots.values()):
        status, code = "loading", 503
    else:
        status, code = "failed", 503
    # A parked engine still answers (its first request wakes it), so "ok" stays "ok".
    parked = [s.id for s in runtime.slots.values() if s.park is not None and s.park.state.value != "awake"]
    return JSONResponse({"status": status, "version": __version__, "parked": parked, "engines": engines},
                        status_code=code)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    for slot in runtime.slots.values():
        if slot.worker is not None:
            runtime.metrics.queue_depth.labels(slot.id).set(slot.worker.queue_depth)
            runtime.metrics.active.labels(slot.id).set(slot.worker.active)
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
