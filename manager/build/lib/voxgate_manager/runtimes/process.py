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
from collections import deque

from voxgate_manager.config import ModelSpec, ProcessRuntime
from voxgate_manager.runtimes import group_leader
from voxgate_manager.runtimes.base import ExitInfo, Runtime, StartError, check_port_free, url_host

STDERR_TAIL_LINES = 20  # kept of the model's stderr, for the exit report

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
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._relay: asyncio.Task[None] | None = None

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
            # our signals reach its whole group, a terminal's ^C does not; the group leader (run by
            # file path: stdlib only) takes the whole group down if the manager dies
            extra = {"start_new_session": True, "preexec_fn": _die_with_parent if sys.platform.startswith("linux") else None}
            argv = [sys.executable, os.path.abspath(group_leader.__file__), "--parent", str(os.getpid()),
                    "--grace", str(self.rt.stop_timeout_s), "--", *argv]
        self._stderr_tail.clear()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=self.rt.cwd, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                **extra  # type: ignore[arg-type]
            )
        except FileNotFoundError:
            raise StartError(f"command not found: {argv[0]!r} (models.json runtime.command of {self.spec.id!r})") from None
        except PermissionError:
            raise StartError(f"command not executable: {argv[0]!r}") from None
        self._proc = proc
        assert proc.stderr is not None
        self._relay = asyncio.create_task(self._relay_stderr(proc.stderr))
        self._monitor = asyncio.create_task(self._watch(proc))
        log.debug("spawned pid %s: %s", proc.pid, " ".join(argv))

    async def _relay_stderr(self, stream: asyncio.StreamReader) -> None:
        """The model's stderr goes on to the manager's (as before), and its last lines are kept so an
        exit is reported with its reason ("exited with code 3" alone says nothing)."""
        out = getattr(sys.stderr, "buffer", None)
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # an over-long line (dropped)
                continue
            except OSError:
                return
            if not line:
                return
            if out is not None:
                with contextlib.suppress(OSError, ValueError):
                    out.write(line)
                    out.flush()
            text = line.decode("utf-8", "replace").rstrip()
            if text.strip():
                self._stderr_tail.append(text[:300])

    def stderr_tail(self, lines: int = 3) -> str:
        return " | ".join(list(self._stderr_tail)[-lines:])

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._relay is not None:  # the last lines may still be in the pipe
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._relay), 1.0)
        if proc is self._proc and not self._stopping:
            if code < 0:
                msg = f"process {proc.pid} was killed by signal {-code}"
            else:
                msg = f"process {proc.pid} exited with code {code}"
            tail = self.stderr_tail()
            if tail:
                msg += f"; last stderr: {tail}"
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
            if os.name != "nt":
                self._signal(proc, signal.SIGCONT)  # a stopped (hung) process must be able to act on it
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
