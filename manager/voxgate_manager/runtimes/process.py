"""A local voxgate-server (or any server) as a child process: the no-Docker, no-GPU path."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys

from voxgate_manager.config import ModelSpec, ProcessRuntime
from voxgate_manager.runtimes.base import ExitInfo, Runtime, StartError, check_port_free, url_host

log = logging.getLogger("voxgate.manager.process")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the server gets SIGTERM if the manager dies without stopping it (no orphan on the port)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ProcessRuntimeImpl(Runtime):
    kind = "process"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        assert isinstance(spec.runtime, ProcessRuntime)
        self.spec = spec
        self.rt: ProcessRuntime = spec.runtime
        self.base_url = f"http://{url_host(self.rt.host)}:{self.rt.port}"
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False

    def argv(self) -> list[str]:
        subs = {"{python}": sys.executable, "{host}": self.rt.host, "{port}": str(self.rt.port)}
        out = []
        for arg in self.rt.command:
            for key, val in subs.items():
                arg = arg.replace(key, val)
            out.append(arg)
        return out

    async def start(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            return
        check_port_free(self.rt.host, self.rt.port, f"model {self.spec.id!r}")
        # the manager's own client keys are not the child's: it listens on loopback behind us
        inherited = {k: v for k, v in os.environ.items() if k not in ("VOXGATE_API_KEYS", "VOXGATE_HOST", "VOXGATE_PORT")}
        env = {**inherited, **self.rt.environment}
        argv = self.argv()
        self._stopping = False
        if os.name == "nt":
            extra: dict[str, object] = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        else:
            # our signals reach its whole group, a terminal's ^C does not
            extra = {"start_new_session": True, "preexec_fn": _die_with_parent if sys.platform.startswith("linux") else None}
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=self.rt.cwd, stdin=asyncio.subprocess.DEVNULL, **extra  # type: ignore[arg-type]
            )
        except FileNotFoundError:
            raise StartError(f"command not found: {argv[0]!r} (models.json runtime.command of {self.spec.id!r})") from None
        except PermissionError:
            raise StartError(f"command not executable: {argv[0]!r}") from None
        self._proc = proc
        self._monitor = asyncio.create_task(self._watch(proc))
        log.debug("spawned pid %s: %s", proc.pid, " ".join(argv))

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if proc is self._proc and not self._stopping:
            if code < 0:
                msg = f"process {proc.pid} was killed by signal {-code}"
            else:
                msg = f"process {proc.pid} exited with code {code}"
            self.on_exit(ExitInfo("exit", code, msg))

    def _signal(self, proc: asyncio.subprocess.Process, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if os.name == "nt":  # no process groups to signal: terminate() is TerminateProcess
                if proc.returncode is None:
                    proc.terminate()
            else:
                os.killpg(proc.pid, sig)

    async def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._stopping = True
        if proc.returncode is None:
            self._signal(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.rt.stop_timeout_s)
            except TimeoutError:
                log.warning("model %s: process %s ignored SIGTERM for %.0fs, killing", self.spec.id, proc.pid, self.rt.stop_timeout_s)
                self._signal(proc, getattr(signal, "SIGKILL", signal.SIGTERM))
                await proc.wait()
        # the group may still hold children (workers): make sure none outlive the stop
        if os.name != "nt":
            self._signal(proc, signal.SIGKILL)
        self._proc = None

    async def close(self) -> None:
        await self.stop()

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d["pid"] = self._proc.pid if self._proc else None
        return d
