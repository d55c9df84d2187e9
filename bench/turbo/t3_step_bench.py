#!/usr/bin/env python3
"""T3 decode step alone: CUDA graphs over the eager step vs over a torch.compile'd step.

    python bench/turbo/t3_step_bench.py --ckpt CKPT [--variants graphs,compiled] [--tokens 250]

Prints one JSON line per variant: set-up seconds (graph capture, compile), ms per token for
one stream, ms per step and tokens/s with 16 streams at once. Used to choose the default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tts-inference-server"))

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.turbo.gpu_common import t3_burst_speed, t3_one_stream_ms_per_token  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--variants", default="graphs,compiled")
    p.add_argument("--tokens", type=int, default=250)
    p.add_argument("--max-len", type=int, default=1024)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from chatterbox.tts_turbo import ChatterboxTurboTTS, punc_norm

    from voxgate_server.engines.chatterbox_fast import BatchedT3Decoder, SamplingParams

    model = ChatterboxTurboTTS.from_local(args.ckpt, device="cuda")
    ids = model.tokenizer(punc_norm("Good morning, and welcome to the weekly update."), return_tensors="pt").input_ids
    out = []
    for variant in args.variants.split(","):
        res: dict[str, object] = {"variant": variant}
        try:
            dec = BatchedT3Decoder(model.t3, max_batch=16, max_len=args.max_len,
                                   compile=(variant == "compiled")).start()
            t0 = time.perf_counter()
            dec.warmup()
            res["setup_s"] = round(time.perf_counter() - t0, 2)
            n = args.tokens + 1
            dec.submit(model.conds.t3, ids, SamplingParams(), 20).result(600)  # warm
            res["one_stream_ms_per_token"] = round(t3_one_stream_ms_per_token(dec, model.conds.t3, ids, n), 3)
            for b in (4, 16):
                ms_per_step, tokens_per_s = t3_burst_speed(dec, model.conds.t3, ids, n, b)
                res[f"b{b}_ms_per_step"] = round(ms_per_step, 3)
                res[f"b{b}_tokens_per_s"] = round(tokens_per_s, 1)
            dec.close()
            del dec
            torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001
            res["error"] = repr(exc)[:500]
        print(json.dumps(res), flush=True)
        out.append(res)
    if args.json:
        Path(args.json).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
