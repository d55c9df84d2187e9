"""Run the real voxgate-manager (its CLI, in a child process) against real voxgate-server models."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join([str(ROOT / "manager"), str(ROOT / "tts-inference-server"), os.environ.get("PYTHONPATH", "")])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def piper_process_model(model_id: str = "piper", port: int | None = None, **overrides: Any) -> dict[str, Any]:
    """A models.json entry running the real voxgate-server (Piper) as a process."""
    entry: dict[str, Any] = {
        "id": model_id,
        "aliases": [f"{model_id}-alias"],
        "upstream_model": "piper",
        "runtime": {
            "type": "process",
            "command": ["{python}", "-m", "voxgate_server.cli", "--host", "{host}", "--port", "{port}"],
            "port": port or free_port(),
            "environment": {"VOXGATE_LOG_LEVEL": "warning", "VOXGATE_ENGINES": "piper"},
            "stop_timeout_s": 5,
        },
        "readiness": {"path": "/health", "expect_status": 200, "json_field": "status", "json_value": "ok"},
        "start_timeout_s": 90,
        "hold_max_s": 90,
        "idle_timeout_s": 600,
        "drain_timeout_s": 20,
        "concurrency": 2,
        "queue_size": 64,
        "park": False,  # these tests are about stops; tests/manager/test_manager_park.py parks
    }
    entry.update(overrides)
    return entry


class ManagerProcess:
    def __init__(self, tmp: Path, models: list[dict[str, Any]] | dict[str, Any], env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int | None = None, admin_port: int | None = None, wait: bool = True) -> None:
        self.tmp = tmp
        self.config = tmp / "models.json"
        self.write_models(models)
        self.host = host
        self.port = port or free_port()
        self.admin_port = admin_port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.env = {**os.environ, "PYTHONPATH": PYTHONPATH, "VOXGATE_MANAGER_TICK_S": "0.1",
                    "VOXGATE_WYOMING_PORT": "0",  # Wyoming only where a test asks for it
                    "VOXGATE_MANAGER_APP_DIR": str(tmp / "manager-data"), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.start(wait)

    def write_models(self, models: list[dict[str, Any]] | dict[str, Any]) -> None:
        data = models if isinstance(models, dict) else {"models": models}
        self.config.write_text(json.dumps(data, indent=2))

    def start(self, wait: bool = True) -> None:
        n = 0
        while (self.tmp / f"manager-{self.port}-{n}.log").exists():
            n += 1
        self.log_path = self.tmp / f"manager-{self.port}-{n}.log"  # one log per manager run
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voxgate_manager.cli", "--config", str(self.config), "--host", self.host,
             "--port", str(self.port), "--admin-port", str(self.admin_port)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_up()

    def wait_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"voxgate-manager exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"voxgate-manager not up in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def events(self, event: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            m = re.search(r"voxgate\.manager\.lifecycle: (\{.*\})$", line)
            if not m:
                continue
            ev = json.loads(m.group(1))
            if (event is None or ev["event"] == event) and (model is None or ev["model"] == model):
                out.append(ev)
        return out

    def status(self, model: str) -> dict[str, Any]:
        return httpx.get(f"{self.admin_url}/admin/models/{model}", timeout=10).json()

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_state(self, model: str, state: str, timeout: float) -> float:
        """Seconds it took; raises if the state is not reached."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.status(model)["state"] == state:
                return time.monotonic() - t0
            time.sleep(0.05)
        raise AssertionError(f"{model} not {state} within {timeout}s: {self.status(model)}\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code


def speech(url: str, model: str = "piper", text: str = "Hello from the manager.", fmt: str = "wav", timeout: float = 120.0,
           **extra: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json={"model": model, "input": text, "voice": "alloy", "response_format": fmt, **extra},
                      timeout=timeout)
