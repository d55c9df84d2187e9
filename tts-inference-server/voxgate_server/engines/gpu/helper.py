"""The server's side of the checkpoint helper process (``cuda_checkpoint.serve``).

Started once the engine is ready (``GpuParking.prepare_park``), or else on the first park, and
kept for the server's life: a park or a wake then costs the driver's work, not a Python start-up
plus ``cuInit``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any

from voxgate_server.engines.base import EngineError

log = logging.getLogger("voxgate.engine.gpu.checkpoint")


class CheckpointHelper:
    def __init__(self, pid: int | None = None, lock_timeout_ms: int = 30_000) -> None:
        self.pid = pid or os.getpid()
        self.lock_timeout_ms = lock_timeout_ms
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the helper process now; otherwise the first command starts it."""
        with self._lock:
            self._started()

    def _started(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        # the helper acts on the server's GPUs by PID: it must not be limited to a renumbered subset
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "voxgate_server.engines.gpu.cuda_checkpoint", "serve", str(self.pid)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        hello = self._read()
        if not hello.get("ok"):
            self.close()
            raise EngineError(f"CUDA checkpoint helper failed to start: {hello.get('error')}")
        return self._proc

    def _read(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise EngineError(f"CUDA checkpoint helper exited (code {self._proc.poll()})")
        return json.loads(line)

    def command(self, line: str) -> dict[str, Any]:
        with self._lock:
            proc = self._started()
            assert proc.stdin is not None
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            answer = self._read()
        if not answer.get("ok"):
            raise EngineError(f"CUDA checkpoint {line.split()[0]} failed: {answer.get('error')}")
        return answer

    def park(self) -> dict[str, Any]:
        return self.command(f"park {self.lock_timeout_ms}")

    def wake(self) -> dict[str, Any]:
        return self.command("wake")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
