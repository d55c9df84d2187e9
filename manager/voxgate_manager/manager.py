"""The set of models: builds a controller and runtime per models.json entry, adopts what runs,
ticks idle deadlines, and reloads the registry restarting only the entries that changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from voxgate_manager.catalog import Catalog
from voxgate_manager.config import DockerRuntime, ModelsFile, ModelSpec, ProcessRuntime, RemoteRuntime, check_listener_ports, load_models
from voxgate_manager.lifecycle.controller import ModelController, lifecycle_event
from voxgate_manager.lifecycle.machine import State
from voxgate_manager.metrics import Metrics
from voxgate_manager.providers import make_provider
from voxgate_manager.providers.runtime import ProviderRuntime
from voxgate_manager.routing.gateway import Gateway
from voxgate_manager.runtimes.base import Runtime, StartError
from voxgate_manager.runtimes.docker import DockerEngine, DockerRuntimeImpl
from voxgate_manager.runtimes.process import ProcessRuntimeImpl
from voxgate_manager.runtimes.remote import RemoteRuntimeImpl
from voxgate_manager.settings import ManagerSettings
from voxgate_manager.transport import h1
from voxgate_manager.transport.upstream import make_upstream_client

log = logging.getLogger("voxgate.manager")


class Manager:
    def __init__(self, settings: ManagerSettings, models: ModelsFile) -> None:
        self.settings = settings
        self.models = models
        self.metrics = Metrics()
        self.http = make_upstream_client()  # one pooled client for every model server
        self.h1 = h1.Pool()  # the proxy's own lean client (speech, voice uploads): see h1.py
        self.docker = DockerEngine(settings.instance)
        self.controllers: dict[str, ModelController] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self.gateway = Gateway(self)  # feature flag, quotas, cache, fallback chains, providers
        self.catalog = Catalog(self, settings.catalog_cache or None)  # voices/capabilities, never starts a model

    # -- construction -------------------------------------------------------------------------

    def _runtime(self, spec: ModelSpec, ctl_ref: list[ModelController]) -> Runtime:
        rt = spec.runtime
        if isinstance(rt, DockerRuntime):
            return DockerRuntimeImpl(spec, self.docker)
        if isinstance(rt, ProcessRuntime):
            return ProcessRuntimeImpl(spec)
        if isinstance(rt, RemoteRuntime):
            return RemoteRuntimeImpl(spec, probe=lambda: ctl_ref[0].probe())
        provider = make_provider(spec.id, rt)
        if provider is not None:
            return ProviderRuntime(rt.type, rt.base_url, provider)
        raise TypeError(rt)

    def _controller(self, spec: ModelSpec) -> ModelController:
        ref: list[ModelController] = []
        ctl = ModelController(spec, self._runtime(spec, ref), self.http, self.metrics)
        ctl.admission = self._admit_vram
        ref.append(ctl)
        return ctl

    async def _admit_vram(self, ctl: ModelController) -> None:
        """Before a start: make room within VOXGATE_MANAGER_VRAM_BUDGET_MB by stopping idle models
        (least recently used first), or wait for room; the start's own timeout bounds the wait."""
        need, budget = ctl.spec.vram_mb or 0, self.settings.vram_budget_mb
        if not need or not budget:
            ctl.vram_admitted = True
            return
        if need > budget:
            raise StartError(f"model {ctl.id!r} needs vram_mb={need} but VOXGATE_MANAGER_VRAM_BUDGET_MB is {budget}")
        while True:
            holders = [c for c in self.controllers.values() if c is not ctl and c.vram_admitted]
            used = sum(c.spec.vram_mb or 0 for c in holders)
            if used + need <= budget:
                ctl.vram_admitted = True
                return
            # parked models first (nothing in flight; stopping them frees their host memory too),
            # then ready idle ones, least recently used first
            idle = sorted((c for c in holders if c.state is State.PARKED or (
                              c.state is State.READY and not c.machine.inflight and not c.machine.waiting)),
                          key=lambda c: (c.state is not State.PARKED, c.machine.last_end))
            if idle:
                victim = idle[0]
                lifecycle_event("vram_evict", victim.id, for_model=ctl.id, need_mb=need, used_mb=used, budget_mb=budget)
                await victim.unload("vram")
                continue
            ctl._last_probe = (f"waiting for {need} MB of VRAM: {used} of {budget} MB held by "
                               + ", ".join(f"{c.id} ({c.spec.vram_mb} MB, {c.state.value})" for c in holders))
            await asyncio.sleep(0.25)

    def _docker_specs(self, models: ModelsFile) -> dict[str, ModelSpec]:
        return {m.id: m for m in models.models if isinstance(m.runtime, DockerRuntime)}

    async def start(self) -> None:
        for spec in self.models.models:
            self.controllers[spec.id] = self._controller(spec)
        if self._docker_specs(self.models):
            if await asyncio.to_thread(self.docker.connect):
                removed = await asyncio.to_thread(self.docker.reconcile, self._docker_specs(self.models))
                for r in removed:
                    lifecycle_event("orphan_removed", "-", container=r)
                self.docker.follow_events(asyncio.get_running_loop())
            else:
                log.warning("%s; docker models will fail to start until it is", self.docker.error)
        for ctl in self.controllers.values():
            if ctl.runtime.adoptable and self.docker.client is not None:
                try:
                    await ctl.adopt()
                except Exception as exc:  # one broken container must not stop the manager
                    log.warning("model %s: adoption failed: %s", ctl.id, exc)
        self._ticker = asyncio.create_task(self._tick())
        self.catalog.start()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            for ctl in list(self.controllers.values()):
                ctl.tick()

    # -- lookup -------------------------------------------------------------------------------

    def resolve(self, name: str | None) -> ModelController | None:
        spec = self.models.resolve(name)
        return self.controllers.get(spec.id) if spec else None

    def status(self) -> list[dict[str, Any]]:
        return [c.status() for c in self.controllers.values()]

    # -- reload -------------------------------------------------------------------------------

    async def reload(self, path: str | None = None) -> dict[str, list[str]]:
        """Re-read models.json (ConfigError leaves everything as it was); restart only changed entries."""
        async with self._reload_lock:
            new = load_models(path or self.settings.config)
            check_listener_ports(new, self.settings.listeners())
            old_specs = {m.id: m for m in self.models.models}
            new_specs = {m.id: m for m in new.models}
            added = [i for i in new_specs if i not in old_specs]
            removed = [i for i in old_specs if i not in new_specs]
            changed = [i for i in new_specs if i in old_specs and new_specs[i].spec_hash() != old_specs[i].spec_hash()]
            unchanged = [i for i in new_specs if i in old_specs and i not in changed]
            # a changed entry gets its new controller at once: requests arriving during the old one's
            # drain wait there (the old controller hands its waiters over and never starts again), and
            # the new one's first start waits until the old runtime is stopped (same port)
            replaced = {i: self.controllers[i] for i in changed}
            for i, old_ctl in replaced.items():
                self.docker.runtimes.pop(i, None)
                new_ctl = self._controller(new_specs[i])
                old_ctl.retire(new_ctl)
                self.controllers[i] = new_ctl
            self.models = new
            # stop (drain) what goes away or changes
            stopping = [self.controllers[i] for i in removed] + list(replaced.values())
            await asyncio.gather(*(c.unload("reload") for c in stopping))
            for i in removed:
                ctl = self.controllers.pop(i)
                await ctl.shutdown(stop_runtime=True)
                self.docker.runtimes.pop(i, None)
            for i in unchanged:  # same runtime, but voices and presets may have changed (not in spec_hash)
                self.controllers[i].spec = new_specs[i]
            for old_ctl in replaced.values():
                await old_ctl.runtime.close()
            for i in added:
                self.docker.runtimes.pop(i, None)
                self.controllers[i] = self._controller(new_specs[i])
            # keep registry order
            self.controllers = {m.id: self.controllers[m.id] for m in new.models}
            if self._docker_specs(new) and self.docker.client is None and await asyncio.to_thread(self.docker.connect):
                self.docker.follow_events(asyncio.get_running_loop())
            if self.docker.client is not None:
                await asyncio.to_thread(self.docker.reconcile, self._docker_specs(new))
            result = {"added": added, "removed": removed, "changed": changed, "unchanged": unchanged}
            lifecycle_event("reloaded", "-", **result)
            return result

    # -- shutdown -----------------------------------------------------------------------------

    async def close(self) -> None:
        await self.catalog.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        stop = self.settings.stop_on_exit or self.settings.remove_on_exit
        await asyncio.gather(*(c.shutdown(stop_runtime=stop) for c in self.controllers.values()), return_exceptions=True)
        if self.settings.remove_on_exit and self.docker.client is not None:
            try:
                removed = await asyncio.to_thread(self.docker.remove_all)
                if removed:
                    log.info("removed model containers on exit: %s", ", ".join(removed))
            except Exception as exc:  # dockerd going down with us: nothing more to do
                log.warning("removing model containers on exit failed: %s", exc)
        self.docker.close()
        self.gateway.close()
        await self.http.aclose()
        self.h1.close()
