"""GPU memory of the chatterbox engine as the server loads and drives it (GPU machine).

``vram_stages.py`` builds ``FastTurbo`` on upstream's model directly; the server does more: its
engine loads through ``ChatterboxTurboEngine.load`` (which warms up on one request) on a thread
of the event loop's pool, and serves requests from the worker threads of an ``EngineWorker``.
This does the same without HTTP, and records ``vram_breakdown`` and nvidia-smi's count for the
process after the load and after each burst of ``MAX_BATCH`` requests, to find what the server
holds that the in-process bench does not. Settings come from the environment as the server
reads them (``VOXGATE_CHATTERBOX_*``); the checkpoint and ``MAX_LEN`` from the arguments.

    python3 bench/memory/vram_server.py --ckpt CKPT --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tts-inference-server"))

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.turbo.gpu_common import smi_process_mib, vram_breakdown  # noqa: E402
from bench.turbo.turbo_clip import SR, TEXT  # noqa: E402


def smi_process_gib() -> float | None:
    """nvidia-smi's used memory for this process, as the HTTP bench samples the server's."""
    try:
        mib = smi_process_mib(os.getpid())
    except (OSError, subprocess.SubprocessError):
        return None
    return round(mib / 1024, 3) if mib is not None else None


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--tokens", type=int, default=250)
    p.add_argument("--max-len", type=int, default=768)
    p.add_argument("--bursts", type=int, default=3)
    args = p.parse_args()
    os.environ.update({"VOXGATE_CHATTERBOX_CHECKPOINT_DIR": args.ckpt, "VOXGATE_CHATTERBOX_DEVICE": "cuda",
                       "VOXGATE_CHATTERBOX_FAST": "on", "VOXGATE_CHATTERBOX_MAX_LEN": str(args.max_len)})
    import torch

    from voxgate_server.engines.base import SynthesisRequest
    from voxgate_server.engines.chatterbox_fast.engine import FastChatterboxTurboEngine
    from voxgate_server.settings import Settings
    from voxgate_server.synthesis.scheduler import EngineWorker

    stages: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def stage(name: str, **extra: Any) -> None:
        torch.cuda.synchronize()
        row = {"stage": name, "t_s": round(time.perf_counter() - t0, 2), **vram_breakdown(torch),
               "smi_process": smi_process_gib(), **extra}
        stages.append(row)
        print(json.dumps(row), flush=True)

    engine = FastChatterboxTurboEngine(Settings())
    loader = threading.Thread(target=engine.load, name="load")  # the server: asyncio.to_thread
    loader.start()
    loader.join()
    if engine.fast is None:
        raise SystemExit("the fast path did not start")
    stage("engine loaded", settings=engine.fast_settings.model_dump())
    n = engine.max_concurrency() or 16
    worker = EngineWorker("chatterbox-turbo", n, 0, 1)
    worker.start_threads()
    stage("worker threads started", threads=n)
    voice = engine.default_voice()

    def one(_: int) -> int:
        request = SynthesisRequest(chunks=[TEXT], voice=voice, options={"max_duration_s": (args.tokens + 1) / 25.0})
        return sum(chunk.samples.size for chunk in engine.synthesize(request))

    pool = worker._executor  # the worker's own threads, as its run() uses them
    for i in range(args.bursts):
        start = time.perf_counter()
        samples = list(pool.map(one, range(n)))
        wall = time.perf_counter() - start
        stage(f"burst of {n} #{i + 1}", audio_s_per_s=round(sum(samples) / SR / wall, 1))
    Path(args.json).write_text(json.dumps({"alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
                                           "stages": stages}, indent=1))
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
