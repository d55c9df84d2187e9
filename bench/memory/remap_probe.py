"""Does a remappable buffer (engines/gpu/remappable.py) survive a CUDA checkpoint/restore?

On a GPU machine: a 1 GiB bf16 tensor in a ``RemappableBuffer`` and a plain tensor beside it, a
CUDA graph captured over both; then what the engine's park does (release the buffer, checkpoint
the process through the helper), nvidia-smi of this process while parked, restore, re-map at the
same address, and the graph replayed. Prints one JSON object (and writes it with --out): the
timings, the MiB held, and whether the re-mapped memory read zeros, the plain tensor kept its
content and the graph gave the expected answer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import torch

from voxgate_server.engines.gpu.helper import CheckpointHelper
from voxgate_server.engines.gpu.remappable import remappable_zeros


def process_mib() -> int:
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30).stdout
    return sum(int(used) for pid, used in (line.split(",") for line in out.splitlines() if line.strip())
               if int(pid) == os.getpid())


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--gib", type=float, default=1.0)
    p.add_argument("--out")
    args = p.parse_args()
    n = int(args.gib * 2**30) // 2
    res: dict[str, object] = {}
    kv, buf = remappable_zeros((n,), torch.bfloat16, "cuda")
    res["remappable"] = buf is not None
    plain = torch.arange(1 << 20, device="cuda", dtype=torch.float32)
    out = torch.zeros(2, device="cuda", dtype=torch.float32)
    kv[: 1 << 20].fill_(1.0)
    torch.cuda.synchronize()
    res["mib_ready"] = process_mib()

    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm up on the side stream, as capture wants
            kv[: 1 << 20].add_(1.0)
        torch.cuda.synchronize()
        kv[: 1 << 20].fill_(1.0)
        with torch.cuda.graph(graph, stream=stream):
            kv[: 1 << 20].add_(1.0)
            out[0] = kv[: 1 << 20].float().sum()
            out[1] = plain.sum()
    torch.cuda.synchronize()
    graph.replay()
    torch.cuda.synchronize()
    res["before"] = out.tolist()  # [2 * 2^20, sum(arange)]

    helper = CheckpointHelper()
    t0 = time.perf_counter()
    torch.cuda.synchronize()
    released = buf.release() if buf is not None else 0
    t1 = time.perf_counter()
    parked = helper.park()
    t2 = time.perf_counter()
    time.sleep(1.0)
    res.update(released_bytes=released, release_s=round(t1 - t0, 4), checkpoint_s=round(t2 - t1, 4),
               helper_park=parked, mib_parked=process_mib())
    t3 = time.perf_counter()
    woken = helper.wake()
    t4 = time.perf_counter()
    if buf is not None:
        buf.remap()
    t5 = time.perf_counter()
    res.update(restore_s=round(t4 - t3, 4), remap_s=round(t5 - t4, 4), helper_wake=woken)
    res["zeros_after_remap"] = bool((kv[: 1 << 20] == 0).all().item()) and bool((kv[-1024:] == 0).all().item())
    graph.replay()
    torch.cuda.synchronize()
    res["after"] = out.tolist()  # [2^20: zeros + 1, the same sum]
    res["graph_ok"] = res["after"] == [float(1 << 20), res["before"][1]]
    res["mib_awake"] = process_mib()
    helper.close()
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0 if res["graph_ok"] and res["zeros_after_remap"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
