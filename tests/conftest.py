"""Shared test helpers: start a real voxgate-server on a loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ports import free_port

ROOT = Path(__file__).resolve().parents[1]


class ServerProcess:
    """A voxgate-server child process; ``url`` once /health says it can synthesize."""

    def __init__(self, env: dict[str, str] | None = None, ready_timeout: float = 120.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("voxgate-server", path=str(Path(sys.executable).parent)) or shutil.which("voxgate-server")
        cmd = [exe] if exe else [sys.executable, "-m", "voxgate_server.cli"]
        full_env = {**os.environ, "VOXGATE_LOG_LEVEL": "warning", **(env or {})}
        self.log_path = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"voxgate-server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*cmd, "--host", "127.0.0.1", "--port", str(self.port)],
                                     env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"voxgate-server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"voxgate-server not ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def server_factory() -> Iterator:
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None) -> ServerProcess:
        proc = ServerProcess(env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
