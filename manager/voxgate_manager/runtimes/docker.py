"""Docker runtime through the Engine API (docker SDK), never the CLI.

One ``DockerEngine`` per manager owns the client, the events stream (die/oom, seen at once) and
start-up reconciliation (adopt what is ours, remove orphans and duplicates). One
``DockerRuntimeImpl`` per model creates its container from the image when missing (labelled as
voxgate's), starts it, and stops it gracefully (SIGTERM, SIGKILL after ``stop_timeout_s``).
Containers are kept after a stop so the next start is a cheap ``docker start`` (unless the manager
exits with VOXGATE_MANAGER_REMOVE_ON_EXIT, which removes them: ``DockerEngine.remove_all``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import DeviceRequest

from voxgate_manager.config import DockerRuntime, ModelSpec, container_name
from voxgate_manager.runtimes.base import Discovery, ExitInfo, Runtime, StartError, check_port_free, url_host

log = logging.getLogger("voxgate.manager.docker")

LABEL_MANAGED = "io.voxgate.managed"
LABEL_INSTANCE = "io.voxgate.instance"
LABEL_MODEL = "io.voxgate.model"
LABEL_HASH = "io.voxgate.runtime-hash"


class DockerEngine:
    """The manager's connection to dockerd (DOCKER_HOST or the local socket)."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.client: docker.DockerClient | None = None
        self.error: str | None = None
        self.runtimes: dict[str, DockerRuntimeImpl] = {}  # by model id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._closed = False

    def connect(self) -> bool:
        try:
            client = docker.from_env(timeout=30)
            client.ping()
        except Exception as exc:  # DockerException, or requests.ConnectionError (dockerd restarting)
            self.error = f"Docker engine not reachable ({exc}); is dockerd running and DOCKER_HOST right?"
            return False
        self.client = client
        self.error = None
        return True

    def require(self) -> docker.DockerClient:
        if self.client is None and not self.connect():
            raise StartError(self.error or "Docker engine not reachable")
        assert self.client is not None
        return self.client

    # -- reconciliation -----------------------------------------------------------------------

    def reconcile(self, specs: dict[str, ModelSpec]) -> list[str]:
        """Remove labelled containers of this instance that no model owns (orphans, duplicates,
        stale specs). Returns what was removed, for the log."""
        client = self.require()
        removed = []
        found = client.containers.list(all=True, filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={self.instance}"]})
        for c in found:
            model = c.labels.get(LABEL_MODEL, "")
            spec = specs.get(model)
            why = None
            if spec is None or not isinstance(spec.runtime, DockerRuntime):
                why = f"no model {model!r} in models.json"
            elif c.name != container_name(spec):
                why = f"duplicate of model {model!r} (expected name {container_name(spec)!r})"
            elif c.labels.get(LABEL_HASH) != spec.runtime_hash():
                why = f"runtime settings of {model!r} changed"
            if why:
                log.info("removing container %s: %s", c.name, why)
                try:
                    c.remove(force=True)
                except NotFound:
                    pass
                removed.append(f"{c.name} ({why})")
        return removed

    def remove_all(self) -> list[str]:
        """The manager exits with VOXGATE_MANAGER_REMOVE_ON_EXIT: remove every container of this
        instance (already stopped and drained by then; force covers one that would not stop), so a
        `docker compose down` leaves no container behind. Returns the names removed."""
        client = self.require()
        removed = []
        for c in client.containers.list(all=True, filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={self.instance}"]}):
            try:
                c.remove(force=True, v=True)  # v: its anonymous volumes too (named ones are never removed)
            except NotFound:
                continue
            removed.append(c.name)
        return removed

    # -- events -------------------------------------------------------------------------------

    def follow_events(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._events_thread, name="docker-events", daemon=True)
        self._thread.start()

    def _events_thread(self) -> None:
        delay = 0.5
        while not self._closed:
            try:
                client = self.require()
                self._stream = client.events(
                    decode=True,
                    filters={"type": "container", "event": ["die", "oom", "kill"], "label": [f"{LABEL_INSTANCE}={self.instance}"]},
                )
                delay = 0.5
                for event in self._stream:
                    if self._closed:
                        return
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(self._dispatch, event)
            except Exception as exc:  # dockerd restarted, socket closed: reconnect
                if self._closed:
                    return
                log.warning("docker events stream lost (%s); reconnecting", exc)
                self.client = None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _dispatch(self, event: dict[str, Any]) -> None:
        attrs = event.get("Actor", {}).get("Attributes", {})
        rt = self.runtimes.get(attrs.get(LABEL_MODEL, ""))
        if rt is None:
            return
        rt.on_event(event.get("Action") or event.get("status") or "", attrs, int(event.get("timeNano") or 0))

    def close(self) -> None:
        self._closed = True
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass


class DockerRuntimeImpl(Runtime):
    kind = "docker"
    adoptable = True

    def __init__(self, spec: ModelSpec, engine: DockerEngine) -> None:
        super().__init__()
        assert isinstance(spec.runtime, DockerRuntime)
        self.spec = spec
        self.rt: DockerRuntime = spec.runtime
        self.engine = engine
        self.name = container_name(spec)
        self.base_url = f"http://{url_host(self.rt.host)}:{self.rt.port}"
        self.container_id: str | None = None
        self._since_ns = 0  # events older than our last start belong to a previous run
        self._oom = False
        self._stopping = False
        self._killed_by: str | None = None  # a SIGTERM we did not send: docker stop by hand, dockerd stopping
        engine.runtimes[spec.id] = self

    # -- helpers ------------------------------------------------------------------------------

    def _labels(self) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_INSTANCE: self.engine.instance,
            LABEL_MODEL: self.spec.id,
            LABEL_HASH: self.spec.runtime_hash(),
        }

    def _get(self) -> Any:
        try:
            return self.engine.require().containers.get(self.name)
        except NotFound:
            return None

    def _owned(self, c: Any) -> bool:
        return c.labels.get(LABEL_MANAGED) == "true" and c.labels.get(LABEL_INSTANCE) == self.engine.instance

    # -- Runtime ------------------------------------------------------------------------------

    async def discover(self) -> Discovery:
        def _inspect() -> Discovery:
            c = self._get()
            if c is None or not self._owned(c):
                return "absent"
            self.container_id = c.id
            return "running" if c.status == "running" else "stopped"

        result = await asyncio.to_thread(_inspect)
        if result == "running":
            self._since_ns = time.time_ns()
        return result

    async def start(self) -> None:
        await asyncio.to_thread(self._start_sync)

    def _start_sync(self) -> None:
        client = self.engine.require()
        c = self._get()
        if c is not None and not self._owned(c):
            raise StartError(
                f"container name {self.name!r} is already used by container {c.short_id} that voxgate does not manage; "
                f"remove it or set runtime.container_name of model {self.spec.id!r}"
            )
        if c is not None and c.labels.get(LABEL_HASH) != self.spec.runtime_hash():
            log.info("model %s: container %s was made from other settings; re-creating", self.spec.id, self.name)
            c.remove(force=True)
            c = None
        if c is not None and c.status == "running":
            self.container_id = c.id
            self._since_ns = time.time_ns()
            return
        check_port_free(self.rt.host, self.rt.port, f"model {self.spec.id!r} (container {self.name})")
        if c is None:
            try:
                client.images.get(self.rt.image)
            except ImageNotFound:
                raise StartError(
                    f"image {self.rt.image!r} of model {self.spec.id!r} is not on this Docker engine; build it first "
                    f"(./build-tts-server.sh) or fix runtime.image"
                ) from None
            c = self._create(client)
        self._since_ns = time.time_ns()
        self._oom = False
        self._stopping = False
        self._killed_by = None
        try:
            c.start()
        except APIError as exc:
            text = str(exc.explanation or exc)
            if "port is already allocated" in text or "address already in use" in text:
                raise StartError(f"port {self.rt.port} on {self.rt.host} is already in use (container {self.name}): {text}") from None
            if "could not select device driver" in text or "nvidia" in text.lower():
                raise StartError(f"container {self.name} needs a GPU the engine cannot give ({text}); see docs/manager.md, GPU set-up") from None
            raise StartError(f"docker could not start container {self.name}: {text}") from None
        self.container_id = c.id

    def _create(self, client: docker.DockerClient) -> Any:
        kwargs: dict[str, Any] = dict(
            image=self.rt.image,
            name=self.name,
            labels=self._labels(),
            environment={"PORT": str(self.rt.container_port), **self.rt.environment},
            ports={f"{self.rt.container_port}/tcp": (self.rt.host, self.rt.port)},
            volumes={v.source: {"bind": v.target, "mode": "ro" if v.read_only else "rw"} for v in self.rt.volumes},
            detach=True,
            stop_signal="SIGTERM",
        )
        if self.rt.shm_size:
            kwargs["shm_size"] = self.rt.shm_size
        if self.rt.mem_limit:
            kwargs["mem_limit"] = kwargs["memswap_limit"] = self.rt.mem_limit
        if self.rt.gpus is not None:
            g = self.rt.gpus
            kwargs["device_requests"] = [
                DeviceRequest(driver=g.driver, count=0 if g.device_ids else g.count, device_ids=g.device_ids, capabilities=[g.capabilities])
            ]
        try:
            return client.containers.create(**kwargs)
        except APIError as exc:
            text = str(exc.explanation or exc)
            if exc.status_code == 409:
                raise StartError(f"container name {self.name!r} is already in use: {text}") from None
            raise StartError(f"docker could not create container {self.name}: {text}") from None

    async def stop(self) -> None:
        self._stopping = True

        def _stop() -> None:
            c = self._get()
            if c is not None and c.status in ("running", "restarting", "paused", "created"):
                c.stop(timeout=int(round(self.rt.stop_timeout_s)))  # SIGTERM, SIGKILL after the timeout

        try:
            await asyncio.to_thread(_stop)
        except Exception as exc:  # DockerException, or a connection error while dockerd restarts
            log.warning("model %s: stopping %s failed: %s", self.spec.id, self.name, exc)

    async def close(self) -> None:
        return None  # left running: the next manager adopts it

    def on_event(self, action: str, attrs: dict[str, str], time_ns: int) -> None:
        if not self._since_ns or (time_ns and time_ns < self._since_ns):
            return  # the end of a previous run (or of a container this runtime never ran): accounted for
        if action == "oom":
            self._oom = True
            return
        if action == "kill":
            # `docker stop` (and dockerd stopping its containers) sends the stop signal, SIGTERM, first;
            # a `docker kill` (SIGKILL) by hand is still reported as the crash it simulates
            if not self._stopping and attrs.get("signal", "") in ("15", "SIGTERM", "TERM"):
                self._killed_by = attrs.get("signal")
            return
        if action != "die" or self._stopping:
            return
        try:
            code = int(attrs.get("exitCode", ""))
        except ValueError:
            code = None
        asyncio.get_running_loop().create_task(self._report_exit(code))

    async def _report_exit(self, code: int | None) -> None:
        """Always reports the exit: the post-mortem is best effort (dockerd may be going down with it:
        a restart of dockerd makes logs() raise requests' ConnectionError, not a DockerException)."""
        try:
            oom_flag, tail = await asyncio.to_thread(self._post_mortem)
        except Exception:
            oom_flag, tail = False, ""
        if self._stopping:
            return  # a stop began meanwhile: expected
        oom = self._oom or oom_flag
        if self._killed_by is not None and not oom:
            msg = f"container {self.name} was stopped outside the manager (signal {self._killed_by}, exit code {code})"
            self.on_exit(ExitInfo("external", code, msg))
            return
        reason = "oom" if oom else "exit"
        msg = f"container {self.name} exited with code {code}" + (" (OOM-killed)" if oom else "")
        if tail and code not in (137, 143):
            msg += f"; last log line: {tail}"
        self.on_exit(ExitInfo(reason, code, msg))

    def _post_mortem(self) -> tuple[bool, str]:
        """OOMKilled flag and the last log line, so "exited with code 1" comes with its reason."""
        try:
            c = self._get()
            if c is None:
                return False, ""
            lines = [ln for ln in c.logs(tail=5).decode("utf-8", "replace").splitlines() if ln.strip()]
            return bool(c.attrs.get("State", {}).get("OOMKilled")), (lines[-1].strip()[:300] if lines else "")
        except Exception:  # DockerException, or requests' ConnectionError while dockerd restarts
            return False, ""

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d.update(container=self.name, container_id=(self.container_id or "")[:12] or None, image=self.rt.image)
        return d
