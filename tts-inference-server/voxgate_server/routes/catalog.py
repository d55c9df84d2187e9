"""GET /v1/models, /v1/models/{id} and /v1/audio/voices: what can be asked for, in OpenAI's shapes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from voxgate_server.errors import APIError
from voxgate_server.runtime import CREATED, EngineSlot, EngineState, Runtime

router = APIRouter()


def _model_object(model_id: str, slot: EngineSlot) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": model_id, "object": "model", "created": CREATED, "owned_by": "voxgate",
                           "root": slot.id, "state": slot.state.value}
    if slot.state is EngineState.READY:
        obj["capabilities"] = slot.engine.capabilities().as_dict()
        obj["capabilities"]["voices"] = [v.id for v in slot.engine.voices()]
        obj["capabilities"]["openai_voices"] = dict(sorted(slot.voice_map.items()))
        if slot.worker is not None:  # what a manager in front may send at once
            obj["capabilities"]["concurrency"] = slot.worker.concurrency
        if slot.park is not None:
            obj["capabilities"]["park"] = slot.park.support.as_dict()
            obj["park_state"] = slot.park.state.value
    elif slot.error:
        obj["error"] = slot.error
    return obj


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    return {"object": "list", "data": [_model_object(mid, runtime.slots[eid]) for mid, eid in runtime.model_ids()]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    for mid, eid in runtime.model_ids():
        if mid == model_id:
            return _model_object(mid, runtime.slots[eid])
    raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")


@router.get("/v1/audio/voices")
async def list_voices(request: Request, model: str | None = None) -> dict[str, Any]:
    """Open WebUI reads ``voices[i].id``; the OpenAI names are listed as aliases of real voices."""
    runtime: Runtime = request.app.state.runtime
    if model is not None:
        slots = [runtime.resolve_model(model)]
    else:
        slots = [s for s in runtime.slots.values() if s.state is EngineState.READY]
    voices: list[dict[str, Any]] = []
    for slot in slots:
        for v in slot.engine.voices():
            entry = {"id": v.id, "name": v.name, "model": slot.id, "language": v.language,
                     "description": v.description, "builtin": v.builtin}
            if v.sha256:
                entry["sha256"] = v.sha256  # a cloned voice's clip: its content hash
            voices.append(entry)
        for alias, target in sorted(slot.voice_map.items()):
            voices.append({"id": alias, "name": alias, "model": slot.id, "alias_of": target})
    return {"object": "list", "voices": voices}
