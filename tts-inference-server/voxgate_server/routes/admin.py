"""POST /admin/park and /admin/wake: give an engine's memory back while the server stays up.

Behind the API keys like every route but /health. ``?model=`` names one engine (id or alias);
without it every engine that can park is parked (or woken). What each engine did is in the
answer; /health and /v1/models show the state.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from voxgate_server.engines.base import EngineError
from voxgate_server.errors import APIError
from voxgate_server.runtime import EngineSlot, EngineState, Runtime
from voxgate_server.synthesis.parking import ParkRefused

router = APIRouter()


def _slots(runtime: Runtime, model: str | None) -> list[EngineSlot]:
    if model is not None:
        slot = runtime.resolve_model(model)
        return [slot]
    return [s for s in runtime.slots.values() if s.state is EngineState.READY]


@router.post("/admin/park")
async def park(request: Request, model: str | None = None) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    slots = _slots(runtime, model)
    parkable = [s for s in slots if s.park is not None and s.park.support.supported]
    if not parkable:
        reasons = "; ".join(f"{s.id}: {s.park.support.reason if s.park else 'not loaded'}" for s in slots)
        raise APIError(409, f"No engine here can park ({reasons or 'none loaded'}).", code="park_not_supported")
    engines: dict[str, Any] = {}
    for slot in parkable:
        assert slot.park is not None
        try:
            seconds = await slot.park.park(runtime.settings.park_drain_timeout_s)
        except ParkRefused as exc:
            raise APIError(409, exc.message, code=exc.code) from None
        engines[slot.id] = {"state": slot.park.state.value, "park_s": round(seconds, 3)}
    return {"parked": True, "engines": engines}


@router.post("/admin/wake")
async def wake(request: Request, model: str | None = None) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    engines: dict[str, Any] = {}
    for slot in _slots(runtime, model):
        if slot.park is None:
            continue
        try:
            seconds = await slot.park.wake()
        except EngineError as exc:
            raise APIError(503, f"Waking {slot.id} failed: {exc}", type="server_error", code="wake_failed") from None
        engines[slot.id] = {"state": slot.park.state.value, "wake_s": round(seconds, 3)}
    return {"parked": False, "engines": engines}
