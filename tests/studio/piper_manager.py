"""A real voxgate-manager (CLI, child process) with a real Piper model, its data on a tmp folder."""

from __future__ import annotations

import io
import json
import math
import struct
import threading
import wave
from pathlib import Path
from typing import Any

import httpx

from manager_harness import ManagerProcess, piper_process_model


def start_manager(tmp: Path, **env: str) -> ManagerProcess:
    model = piper_process_model()
    model["runtime"]["environment"]["VOXGATE_VOICES_DIR"] = str(tmp / "voices")
    return ManagerProcess(tmp, [model], env={"VOXGATE_MANAGER_DATA_DIR": str(tmp / "data"), **env})


def sign_up(url: str, name: str, password: str = "studio password 1") -> dict[str, Any]:
    r = httpx.post(f"{url}/api/auth/register", json={"username": name, "password": password}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def auth(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def chapter(chars: int) -> str:
    """Varied English prose of about ``chars`` characters (sentences of different lengths)."""
    words = ("river", "lantern", "morning", "garden", "window", "harbour", "meadow", "letter", "engine", "painter",
             "village", "thunder", "candle", "orchard", "bridge", "station", "kitchen", "sailor", "mountain", "library")
    out, i = [], 0
    while sum(len(s) + 1 for s in out) < chars:
        a, b, c = words[i % 20], words[(i * 7 + 3) % 20], words[(i * 11 + 5) % 20]
        out.append(f"The {a} near the {b} was quiet on day {i + 1}, and the {c} waited for news."
                   if i % 3 else f"Chapter part {i + 1} begins as the {a} wakes.")
        i += 1
    return " ".join(out)[:chars]


def tone_wav(seconds: float = 6.0, rate: int = 24000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * (180 + 40 * math.sin(t / 900)) * t / rate)))
                               for t in range(int(seconds * rate))))
    return buf.getvalue()


class SSECollector:
    """Reads /api/tts/jobs/{id}/events on a thread; reconnects with Last-Event-ID when cut off."""

    def __init__(self, url: str, job_id: str, headers: dict[str, str]) -> None:
        self.url, self.job_id, self.headers = url, job_id, headers
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.reconnects = 0
        self.done = threading.Event()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import time

        while not self.stop and not self.done.is_set():
            last = self.events[-1][0] if self.events else 0
            try:
                with httpx.stream("GET", f"{self.url}/api/tts/jobs/{self.job_id}/events", timeout=httpx.Timeout(60, connect=2),
                                  headers={**self.headers, **({"Last-Event-ID": str(last)} if last else {})}) as r:
                    if r.status_code != 200:
                        raise httpx.HTTPError(f"status {r.status_code}")
                    ev: dict[str, str] = {}
                    for line in r.iter_lines():
                        if line == "":
                            if "event" in ev:
                                self.events.append((int(ev["id"]), ev["event"], json.loads(ev["data"])))
                                if ev["event"] in ("complete", "error"):
                                    self.done.set()
                                    return
                            ev = {}
                        elif not line.startswith(":") and ":" in line:
                            k, v = line.split(":", 1)
                            ev[k] = v[1:] if v.startswith(" ") else v
            except (httpx.HTTPError, OSError):
                self.reconnects += 1
                time.sleep(0.3)
