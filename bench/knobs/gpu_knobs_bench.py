#!/usr/bin/env python3
"""Which fast-path settings pay on this GPU: each knob against its baseline, same process, same run.

    python bench/knobs/gpu_knobs_bench.py --ckpt CKPT [--json OUT] [--sections mem,t3,flow,clips]

- ``mem``: where the VRAM goes after loading (parameters per module, allocated).
- ``t3prof``: the kernels of one decode step (batch 1 and 16), by total GPU time.
- ``s3mem``: peak memory and wall of S3Gen's batched calls, 16 pieces at once against split calls,
  and how far TF32 matmuls move the flow's mel (same noise); ``--tf32`` runs it all with them.
- ``flowprof``: a batched flow call's kernels by GPU time, and the estimator's attention in
  float16 / bfloat16 (``flow_attention.py``) and autocast against it: wall, peak memory, mel moved.
- ``hiftprof``: a batched HiFT call's kernels by GPU time, eager against its graph's replay, with
  PyTorch's Snake and with the fused one (``snake_kernel.py``), and how far the wave moves.
- ``fusedcfg``: the fused step's matmul tiles, K splits and PDL, replayed as graphs (batch 1 and
  16); ``--sweep`` searches each matrix's tiles. ``attncfg``: the weights' layout and the
  attention's key blocks and splits.
- ``t3step``: the decode step's variants (plain graphs, fused Triton kernels, ``torch.compile``):
  set-up, step time, greedy tokens against the plain step.
- ``t3``: the T3 decoder alone: graph replay only (GPU time of a step, no host work) against the
  scheduler's ms per token, for ``ahead`` 1/2/3 (steps queued before the host reads the last
  one), one stream and 16, each also with a thread running S3Gen flow calls at the same time
  (what the engine does while it decodes), under the default and a 0.5 ms GIL switch interval.
- ``flow``: S3Gen flow calls in float32 against bf16 autocast: wall, and how far the mel moves
  (against how far other noise moves it).
- ``flowgraph``: S3Gen flow and HiFT calls as upstream makes them, restated eagerly, and replayed
  as CUDA graphs (``flow_graph.py``, ``hift_graph.py``): wall, capture cost, the replayed output
  against the eager one (and, for the flow, against upstream's with the same noise).
- ``clips``: whole clips through ``FastTurbo`` (RTF of one stream, first audio, audio s/s at 16)
  for the combinations that the sections above single out (``--variant`` JSON: FastTurbo keyword
  arguments; run each variant in its own process for a fair A/B, as ``bench/gpu_knobs.sh`` does).

This file is the entry point: the command line, the model, the sections in order, the JSON.
Each section lives with those that measure the same part: ``knobs_mem.py``, ``knobs_t3.py``
(t3, t3step), ``knobs_t3_kernels.py`` (t3prof, fusedcfg, attncfg), ``knobs_s3gen.py`` (s3mem,
flow, flowgraph), ``knobs_s3gen_profile.py`` (flowprof, hiftprof, syncs), ``knobs_clips.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tts-inference-server"))

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.knobs.knobs_clips import section_clips  # noqa: E402
from bench.knobs.knobs_common import emit  # noqa: E402
from bench.knobs.knobs_mem import section_mem  # noqa: E402
from bench.knobs.knobs_s3gen import section_flow, section_flowgraph, section_s3mem  # noqa: E402
from bench.knobs.knobs_s3gen_profile import section_flowprof, section_hiftprof, section_syncs  # noqa: E402
from bench.knobs.knobs_t3 import T3_VARIANTS, section_t3, section_t3step  # noqa: E402
from bench.knobs.knobs_t3_kernels import section_attncfg, section_fusedcfg, section_t3prof  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--json", default=None)
    p.add_argument("--tokens", type=int, default=250)
    p.add_argument("--sections", default="mem,t3prof,t3,flow,clips")
    p.add_argument("--sweep", action="store_true", help="fusedcfg: search each matmul's tiles and K splits")
    p.add_argument("--tf32", action="store_true", help="TF32 matmuls process-wide (what FastTurbo(tf32=True) sets)")
    p.add_argument("--t3-variants", default="plain,fused", help="for t3step: " + ",".join(T3_VARIANTS))
    p.add_argument("--variant", dest="variants", action="append",
                   default=None, help='JSON FastTurbo kwargs for the clips section (repeatable); '
                                      '"switch_interval_ms" sets the GIL switch interval, '
                                      '"flow_batch_width_step" / "hift_batch_frame_step" the batched '
                                      'S3Gen graphs\' padding steps')
    args = p.parse_args()
    args.variants = args.variants or ['{"decode_ahead": 1}', '{"decode_ahead": 2}']
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    model = ChatterboxTurboTTS.from_local(args.ckpt, device="cuda")
    rows: list[dict[str, Any]] = []
    sections = args.sections.split(",")
    for name, fn in (("mem", lambda: section_mem(model, torch, rows)),
                     ("t3prof", lambda: section_t3prof(model, torch, rows)),
                     ("fusedcfg", lambda: section_fusedcfg(model, torch, args, rows)),
                     ("attncfg", lambda: section_attncfg(model, torch, rows)),
                     ("s3mem", lambda: section_s3mem(model, torch, rows)),
                     ("flowprof", lambda: section_flowprof(model, torch, rows)),
                     ("hiftprof", lambda: section_hiftprof(model, torch, rows)),
                     ("t3step", lambda: section_t3step(model, torch, args, rows)),
                     ("syncs", lambda: section_syncs(model, torch, rows)),
                     ("flow", lambda: section_flow(model, torch, rows)),
                     ("flowgraph", lambda: section_flowgraph(model, torch, rows)),
                     ("t3", lambda: section_t3(model, torch, args, rows)),
                     ("clips", lambda: section_clips(model, torch, args, rows))):
        if name in sections:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - the other sections still run
                emit({"section": name, "error": repr(exc)[:800]}, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
