#!/usr/bin/env python3
"""Smoke-check the chatterbox-turbo engine on this machine (CUDA when present) without a server.

    python tools/turbo_smoke.py CKPT_DIR [--clip CLIP] [--device auto] [--dtype float32] [--tokens 50]

Loads the engine from CKPT_DIR (e.g. a random checkpoint from make_random_turbo_ckpt.py),
synthesizes with the built-in voice and, given --clip (or a generated one), a cloned voice;
checks that two threads with different voices and fixed seeds give the same audio as the same
requests one after the other; prints one JSON line with the timings. Not a benchmark (see
bench/): it reports what one run took, to show the path works on a device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tts-inference-server"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt", type=Path)
    ap.add_argument("--clip", type=Path, default=None, help="reference clip (> 5 s); default: synthetic")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tokens", type=int, default=50, help="speech tokens per request")
    args = ap.parse_args()

    from voxgate_server.engines.base import SynthesisRequest
    from voxgate_server.engines.chatterbox_turbo.engine import ChatterboxTurboEngine
    from voxgate_server.engines.chatterbox_turbo.settings import ChatterboxSettings
    from voxgate_server.settings import Settings

    voices = Path(tempfile.mkdtemp(prefix="voices-"))
    if args.clip is not None:
        (voices / f"clone{args.clip.suffix}").write_bytes(args.clip.read_bytes())
    else:
        import soundfile as sf

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from make_random_turbo_ckpt import synthetic_voice

        sf.write(voices / "clone.wav", synthetic_voice(8.0, 24000, seed=1), 24000)

    report: dict[str, object] = {}
    started = time.perf_counter()
    engine = ChatterboxTurboEngine(
        Settings(voices_dir=voices),
        ChatterboxSettings(checkpoint_dir=args.ckpt, device=args.device, dtype=args.dtype),
    )
    engine.load()
    report.update(device=engine.device, dtype=args.dtype, load_s=round(time.perf_counter() - started, 2))
    seconds = args.tokens / 25

    def run(voice: str, seed: int) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        request = SynthesisRequest(chunks=["Hello there [laugh], this is a smoke test of the engine."],
                                   voice=voice, options={"seed": seed, "max_duration_s": seconds})
        samples = np.concatenate([c.samples for c in engine.synthesize(request)])
        return samples, time.perf_counter() - t0

    first, t_first = run("default", 1)
    clone, t_clone_first = run("clone", 2)
    again, t_default = run("default", 1)
    clone_again, t_clone = run("clone", 2)
    results: dict[str, np.ndarray] = {}

    def worker(name: str, voice: str, seed: int) -> None:
        results[name] = run(voice, seed)[0]

    threads = [threading.Thread(target=worker, args=("default", "default", 1)),
               threading.Thread(target=worker, args=("clone", "clone", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.update(
        samples=int(first.size), audio_s=round(first.size / 24000, 3),
        first_request_s=round(t_first, 3), clone_first_request_s=round(t_clone_first, 3),
        default_request_s=round(t_default, 3), clone_request_s=round(t_clone, 3),
        seeded_repeat_equal=bool(np.array_equal(first, again) and np.array_equal(clone, clone_again)),
        concurrent_equals_sequential=bool(np.array_equal(results["default"], first)
                                          and np.array_equal(results["clone"], clone)),
        voices_differ=not np.array_equal(first, clone),
        finite=bool(np.isfinite(first).all() and np.isfinite(clone).all()),
    )
    try:
        import torch

        if torch.cuda.is_available():
            report["cuda_peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            report["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    print(json.dumps(report))
    ok = report["seeded_repeat_equal"] and report["concurrent_equals_sequential"] and report["voices_differ"]
    return 0 if ok and report["finite"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
