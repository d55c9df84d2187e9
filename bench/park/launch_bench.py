"""GPU benchmark: process launch -> first audio byte, against upstream's load + first generate().

Issue 16's cold-start target, in one run on one machine:

- ``upstream``: a fresh Python process that imports chatterbox, ``ChatterboxTurboTTS.from_local``
  on the checkpoint and runs one ``generate()`` of the bench clip (``--tokens`` speech tokens, the
  random checkpoint never stops early); times from the process's launch;
- ``voxgate_cold``: ``voxgate-server`` launched with empty Triton/TorchInductor caches
  (``TRITON_CACHE_DIR``, ``TORCHINDUCTOR_CACHE_DIR``), its stages from its log (park_bench's
  ``Server``), ``/health`` 200, and the first byte of a streamed request;
- ``voxgate_warm``: launched again on the caches the cold launch filled (what a container with
  the compile-cache volume gets from its second start on).

Writes launch_bench.json and launch_bench.md under ``--out``:

    python3 bench/park/launch_bench.py --ckpt CKPT --out OUT [--tokens 150]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx


sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.park.gpu_server import Server, speak, wait_stage  # noqa: E402
from bench.turbo.turbo_clip import TEXT  # noqa: E402

UPSTREAM = r"""
import functools, json, os, sys, time
t_launch = float(sys.argv[1]); ckpt = sys.argv[2]; tokens = int(sys.argv[3]); text = sys.argv[4]
import torch
from chatterbox.tts_turbo import ChatterboxTurboTTS
imported = time.time() - t_launch
model = ChatterboxTurboTTS.from_local(ckpt, device="cuda")
torch.cuda.synchronize()
loaded = time.time() - t_launch
model.t3.inference_turbo = functools.partial(model.t3.inference_turbo, max_gen_len=tokens)
wav = model.generate(text)
torch.cuda.synchronize()
done = time.time() - t_launch
print(json.dumps({"imported": round(imported, 3), "loaded": round(loaded, 3), "first_clip": round(done, 3),
                  "clip_audio_s": round(wav.shape[-1] / 24000, 3)}))
"""


def upstream(ckpt: str, tokens: int) -> dict[str, Any]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", UPSTREAM, repr(t0), ckpt, str(tokens), TEXT], env=env,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def voxgate(args: argparse.Namespace, cache: Path, label: str) -> dict[str, Any]:
    os.environ["TRITON_CACHE_DIR"] = str(cache / "triton")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache / "inductor")
    out = Path(args.out) / label
    out.mkdir(parents=True, exist_ok=True)
    server = Server(argparse.Namespace(ckpt=args.ckpt, out=str(out), burst=16))
    try:
        ready = server.wait_ready(600)
        with httpx.Client() as c:
            first = speak(c, server.url, 6.0)
        # the background capture's end (the warm-up burst begins after it, at the first idle moment)
        wait_stage(server, "s3gen_graphs_captured", 60)
        time.sleep(0.5)
        return {**server.stage_times(), "health_200": round(ready, 3),
                "first_byte": round(first["t0"] + first["first_byte_s"] - server.t0, 3)}
    finally:
        server.stop()


def markdown(res: dict[str, Any]) -> str:
    up, cold, warm = res["upstream"], res["voxgate_cold"], res["voxgate_warm"]
    rows = ["| from process launch (s) | upstream | voxgate, empty compile cache | voxgate, warm compile cache |",
            "|---|---|---|---|",
            f"| web server started (uvicorn) | | {cold.get('server_started')} | {warm.get('server_started')} |",
            f"| imports done (voxgate: torch + chatterbox on the pre-import thread) | {up.get('imported')} | "
            f"{cold.get('libraries_imported')} | {warm.get('libraries_imported')} |",
            f"| upstream's from_local returned | {up.get('loaded')} | {cold.get('checkpoint_read')} | "
            f"{warm.get('checkpoint_read')} |",
            f"| weights loaded (voxgate: the engine's T3 and vocoder set up) | {up.get('loaded')} | "
            f"{cold.get('weights_loaded')} | {warm.get('weights_loaded')} |",
            f"| fast path warm (graphs, one request) | | {cold.get('fast_path_warm')} | {warm.get('fast_path_warm')} |",
            f"| /health 200 | | {cold.get('health_200')} | {warm.get('health_200')} |",
            f"| first audio byte / first clip | {up.get('first_clip')} (whole clip, {up.get('clip_audio_s')} s) "
            f"| {cold.get('first_byte')} | {warm.get('first_byte')} |",
            f"| S3Gen graphs captured (background) | | {cold.get('s3gen_graphs_captured')} | "
            f"{warm.get('s3gen_graphs_captured')} |",
            f"| warm-up burst ended (background) | | {cold.get('warm_burst_ended')} | {warm.get('warm_burst_ended')} |"]
    target = res.get("target_met_warm")
    return ("# Launch bench (" + res.get("gpu", "") + ")\n\n" + "\n".join(rows) +
            f"\n\nTarget (first byte, warm cache <= upstream's first clip): {target}\n")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--tokens", type=int, default=150, help="upstream's clip, in speech tokens (6 s)")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"text_chars": len(TEXT), "tokens": args.tokens}
    try:
        res["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        pass
    cache = Path(tempfile.mkdtemp(prefix="voxgate-compile-cache-"))
    res["voxgate_cold"] = voxgate(args, cache, "cold")
    res["upstream"] = upstream(args.ckpt, args.tokens)
    res["voxgate_warm"] = voxgate(args, cache, "warm")
    first, clip = res["voxgate_warm"].get("first_byte"), res["upstream"].get("first_clip")
    res["target_met_warm"] = first is not None and clip is not None and first <= clip
    (Path(args.out) / "launch_bench.json").write_text(json.dumps(res, indent=1) + "\n")
    (Path(args.out) / "launch_bench.md").write_text(markdown(res))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
