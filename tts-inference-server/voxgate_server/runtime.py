"""The loaded engines, their workers, and how model and voice names resolve to them."""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from dataclasses import dataclass, field

from voxgate_server.engines import create_engine
from voxgate_server.engines.base import Engine, InvalidRequest, ParkSupport
from voxgate_server.errors import APIError
from voxgate_server.metrics import ServerMetrics
from voxgate_server.settings import OPENAI_VOICES, Settings
from voxgate_server.synthesis.parking import EnginePark
from voxgate_server.synthesis.scheduler import EngineWorker

log = logging.getLogger("voxgate.runtime")

CREATED = int(time.time())


class EngineState(str, enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class EngineSlot:
    engine: Engine
    state: EngineState = EngineState.LOADING
    error: str | None = None
    load_seconds: float | None = None
    worker: EngineWorker | None = None
    voice_map: dict[str, str] = field(default_factory=dict)
    park: EnginePark | None = None

    @property
    def id(self) -> str:
        return self.engine.id


class Runtime:
    def __init__(self, settings: Settings, metrics: ServerMetrics, engines: list[Engine] | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        built = engines if engines is not None else [create_engine(e, settings) for e in settings.engines]
        self.slots: dict[str, EngineSlot] = {e.id: EngineSlot(engine=e) for e in built}
        for slot in self.slots.values():
            metrics.engine_ready.labels(slot.id).set(0)
        self.aliases = {alias: target for alias, target in settings.aliases.items() if target in self.slots}
        self._load_task: asyncio.Task[None] | None = None
        self.shutting_down = False

    # -- loading -----------------------------------------------------------------------------

    def start_loading(self) -> None:
        """Load every engine in the background: the server answers (503 on /health) meanwhile."""
        self._load_task = asyncio.create_task(self._load_all())

    async def _load_all(self) -> None:
        await asyncio.gather(*(self._load(slot) for slot in self.slots.values()))

    async def _load(self, slot: EngineSlot) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(slot.engine.load)
        except Exception as exc:  # noqa: BLE001 - reported on /health, never raised to clients
            slot.state, slot.error = EngineState.FAILED, f"{type(exc).__name__}: {exc}"
            log.error("engine %s failed to load: %s", slot.id, slot.error)
            return
        slot.load_seconds = time.perf_counter() - started
        s = self.settings
        worker = EngineWorker(slot.id, slot.engine.max_concurrency() or s.concurrency, s.queue_size, s.retry_after_s)
        try:
            await asyncio.to_thread(worker.start_threads)
        except Exception:  # noqa: BLE001 - they start on first use instead
            log.warning("engine %s: worker threads not started ahead", slot.id, exc_info=True)
        slot.worker = worker
        slot.voice_map = self._voice_map_for(slot.engine)
        slot.park = EnginePark(slot.engine, await asyncio.to_thread(self._park_support, slot.engine))
        if slot.park.support.supported:
            log.info("engine %s can park (%s): POST /admin/park gives its memory back", slot.id,
                     slot.park.support.mechanism)
            threading.Thread(target=self._prepare_park, args=(slot,), name=f"prepare-park-{slot.id}",
                             daemon=True).start()
        else:
            log.warning("engine %s cannot park: %s; a manager stops it instead", slot.id, slot.park.support.reason)
        slot.state = EngineState.READY
        self.metrics.engine_ready.labels(slot.id).set(1)
        self.metrics.load_seconds.labels(slot.id).set(slot.load_seconds)
        log.info("engine %s ready in %.2f s", slot.id, slot.load_seconds)

    @staticmethod
    def _prepare_park(slot: EngineSlot) -> None:
        try:
            slot.engine.prepare_park()
        except Exception:  # noqa: BLE001 - the first park does the work then, or reports the error
            log.warning("engine %s: preparing to park failed", slot.id, exc_info=True)

    @staticmethod
    def _park_support(engine: Engine) -> ParkSupport:
        try:
            return engine.park_support()
        except Exception as exc:  # noqa: BLE001 - a probe that fails means "cannot park"
            return ParkSupport(False, reason=f"probe failed: {type(exc).__name__}: {exc}")

    def _voice_map_for(self, engine: Engine) -> dict[str, str]:
        default = engine.default_voice()
        mapping = {name: default for name in OPENAI_VOICES}
        mapping.update(getattr(engine, "openai_voice_map", lambda: {})())
        mapping.update(self.settings.voice_map.get(engine.id, {}))
        return mapping

    def begin_shutdown(self, grace_s: float) -> None:
        """SIGTERM: refuse requests not yet started (503); stop running ones after ``grace_s``."""
        self.shutting_down = True
        workers = [slot.worker for slot in self.slots.values() if slot.worker is not None]
        for worker in workers:
            worker.begin_shutdown()
        asyncio.get_running_loop().call_later(grace_s, lambda: [w.cancel_running() for w in workers])

    async def close(self, join_s: float = 5.0) -> None:
        """Stop the engines; wait (bounded) for their threads, so none outlives the event loop."""
        self.shutting_down = True
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        for slot in self.slots.values():
            if slot.worker is not None:
                slot.worker.shutdown()
                try:
                    await asyncio.wait_for(asyncio.to_thread(slot.worker.join), join_s)
                except asyncio.TimeoutError:
                    log.warning("engine %s: a synthesis thread is still running at shutdown", slot.id)
            try:
                slot.engine.close()
            except Exception:  # noqa: BLE001
                log.exception("closing engine %s", slot.id)

    # -- resolution --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return any(slot.state is EngineState.READY for slot in self.slots.values())

    def model_ids(self) -> list[tuple[str, str]]:
        """(model id, engine id) for every engine and alias."""
        return [(e, e) for e in self.slots] + sorted(self.aliases.items())

    def resolve_model(self, model: str) -> EngineSlot:
        engine_id = model if model in self.slots else self.aliases.get(model)
        if engine_id is None:
            raise APIError(404, f"The model '{model}' does not exist.", param="model", code="model_not_found")
        slot = self.slots[engine_id]
        if slot.state is EngineState.LOADING:
            raise APIError(503, f"The model '{model}' is still loading; retry shortly.", code="model_loading",
                           headers={"Retry-After": str(self.settings.retry_after_s)})
        if slot.state is EngineState.FAILED:
            raise APIError(503, f"The model '{model}' failed to load: {slot.error}", code="model_failed", type="server_error")
        return slot

    def resolve_voice(self, slot: EngineSlot, voice: str) -> str:
        known = {v.id: v.id for v in slot.engine.voices()}
        lowered = {k.lower(): v for k, v in known.items()}
        if voice in known:
            return voice
        if voice.lower() in lowered:
            return lowered[voice.lower()]
        try:
            spec = slot.engine.resolve_voice(voice)
        except InvalidRequest as exc:
            raise APIError(400, exc.message, param=exc.param or "voice", code=exc.code or "invalid_voice") from None
        if spec is not None:
            return spec
        mapped = slot.voice_map.get(voice) or slot.voice_map.get(voice.lower())
        if mapped is not None and mapped in known:
            return mapped
        names = ", ".join(sorted(set(known) | set(slot.voice_map)))
        raise APIError(400, f"Voice '{voice}' is not available for model '{slot.id}'. Available: {names}.",
                       param="voice", code="invalid_voice")
