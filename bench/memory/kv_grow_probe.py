"""What growing the KV cache costs in driver calls, and whether the reserved-range buffers
(engines/gpu/remappable.py, growable.py) keep their contract on a real GPU.

The growing cache maps one chunk per layer each time requests reach a new page: 24 lanes x
(``cuMemCreate`` + ``cuMemMap`` + ``cuMemSetAccess``). This times that against one chunk of
the same bytes, on an idle GPU and while a kernel runs on another stream (does the decoder's
thread wait for the GPU there?), and checks: what was written stays through a grow, a trimmed
and re-grown buffer keeps its address, a released buffer refuses to grow until ``remap``, and a
``RemappableBuffer`` reads zeros after release + remap at the same address.

    python bench/memory/kv_grow_probe.py --out DIR      # kv_grow_probe.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from voxgate_server.engines.gpu.growable import GrowableBuffer
from voxgate_server.engines.gpu.remappable import RemapError, RemappableBuffer, granularity

LAYERS = 24
POSITION_BYTES = 16 * 2 * 16 * 64 * 2  # Turbo's T3 at batch 16, bf16: 64 KiB a position
POSITIONS = 1024


def time_grows(lanes: int, pages_per_lane: int, steps: int, busy: bool) -> dict[str, Any]:
    """``steps`` grows of ``pages_per_lane`` pages in each of ``lanes`` lanes, then one trim."""
    gran = granularity()
    buf = GrowableBuffer(lanes, steps * pages_per_lane * gran)
    side = torch.cuda.Stream()
    times = []
    for k in range(steps):
        if busy:
            with torch.cuda.stream(side):
                torch.cuda._sleep(50_000_000)  # ~25-40 ms of GPU time on the side stream
        t0 = time.perf_counter()
        buf.grow((k + 1) * pages_per_lane * gran)
        times.append(time.perf_counter() - t0)
        if busy:
            side.synchronize()
    t0 = time.perf_counter()
    freed = buf.trim()
    trim_s = time.perf_counter() - t0
    buf.close()
    return {"lanes": lanes, "pages_per_lane": pages_per_lane, "busy_gpu": busy, "grows": steps,
            "grow_ms_median": round(1e3 * statistics.median(times), 3), "grow_ms_max": round(1e3 * max(times), 3),
            "grow_ms_total": round(1e3 * sum(times), 2), "trim_ms": round(1e3 * trim_s, 3), "trimmed_mib": freed >> 20}


def check_growable() -> dict[str, Any]:
    gran = granularity()
    buf = GrowableBuffer(LAYERS, 4 * gran)
    buf.grow(gran)  # PyTorch asks the driver about the first byte when it wraps the pointer
    raw = torch.as_tensor(buf, device="cuda")
    lanes = raw.view(LAYERS, 4 * gran)
    lanes[:, :gran].fill_(7)
    buf.grow(3 * gran)
    lanes[:, gran:3 * gran].zero_()
    kept = bool((lanes[:, :gran] == 7).all()) and bool((lanes[:, gran:3 * gran] == 0).all())
    ptr = buf.ptr
    trimmed = buf.trim()
    buf.grow(gran)
    lanes[:, :gran].fill_(3)
    same_address = buf.ptr == ptr and raw.data_ptr() == ptr and bool((lanes[:, :gran] == 3).all())
    buf.release()
    try:
        buf.grow(gran)
        refused = False
    except RemapError:
        refused = True
    buf.remap()
    buf.grow(2 * gran)
    lanes[:, : 2 * gran].fill_(1)
    after_remap = bool((lanes[:, : 2 * gran] == 1).all())
    torch.cuda.synchronize()
    buf.close()
    return {"kept_through_grow": kept, "trimmed_mib": trimmed >> 20, "same_address_after_trim": same_address,
            "refused_while_released": refused, "grows_after_remap": after_remap}


def check_remappable() -> dict[str, Any]:
    buf = RemappableBuffer(64 << 20)
    t = torch.as_tensor(buf, device="cuda")
    t.fill_(5)
    torch.cuda.synchronize()
    ptr = buf.ptr
    released = buf.release()
    buf.remap()
    t2 = torch.as_tensor(buf, device="cuda")
    out = {"released_mib": released >> 20, "same_address": buf.ptr == ptr and t2.data_ptr() == ptr,
           "zeros_after_remap": bool((t2 == 0).all()), "mapped": buf.mapped}
    buf.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    gran = granularity()
    pages = -(-POSITIONS * POSITION_BYTES // gran)  # a layer's 1024 positions in pages
    res: dict[str, Any] = {"granularity_mib": gran >> 20, "gpu": torch.cuda.get_device_name()}
    res["growable"] = check_growable()
    res["remappable"] = check_remappable()
    # a burst's worth: 20 grows of one page in each of 24 layers (the cache now), against 20
    # grows of one chunk of 24 pages (a layout with positions outermost across layers)
    res["timings"] = [time_grows(LAYERS, 1, 20, False), time_grows(1, LAYERS, 20, False),
                      time_grows(LAYERS, 1, 20, True), time_grows(1, LAYERS, 20, True),
                      time_grows(LAYERS, 4, 5, False)]
    res["pages_per_layer_at_1024"] = pages
    print(json.dumps(res, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "kv_grow_probe.json").write_text(json.dumps(res, indent=1) + "\n")
    ok = all(res["growable"][k] for k in ("kept_through_grow", "same_address_after_trim", "refused_while_released",
                                           "grows_after_remap")) and all(
        res["remappable"][k] for k in ("same_address", "zeros_after_remap", "mapped"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
