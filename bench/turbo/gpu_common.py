"""Helpers the GPU benchmarks share: concurrent clients released together, clip, graph-step and T3
scheduler timing, where the GPU memory is, and a burst's launch timeline."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

def log(*a: Any) -> None:
    """Progress on stderr, so that stdout stays the bench's JSON."""
    print(*a, file=sys.stderr, flush=True)


def run_at_once(n: int, fn: Callable[[int], T]) -> tuple[list[T], list[str], float]:
    """Run ``fn(i)`` for i in 0..n-1 on n threads released together by a barrier; returns the
    results, the errors (repr) of the calls that raised, and the wall seconds from the release
    to the end of the last call. Threads start before the clock, so start-up is not timed."""
    results: list[T] = []
    errors: list[str] = []
    barrier = threading.Barrier(n + 1)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results.append(fn(i))
        except Exception as exc:  # noqa: BLE001 - counted, the others go on
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return results, errors, time.perf_counter() - t0


def time_clip(chunks: Iterable[Any], sample_rate: int) -> dict[str, float]:
    """Time one streamed clip (arrays of samples) from the first pull: seconds to the first chunk
    and to the end, audio seconds, chunk count, and the playback stall: the seconds a player that
    starts at the first chunk and plays in real time would wait for later ones (0: gapless)."""
    t0 = time.perf_counter()
    first = None
    samples = 0
    count = 0
    play_end = 0.0  # when that player runs out of audio
    stall = 0.0
    for chunk in chunks:
        now = time.perf_counter() - t0
        if first is None:
            first = play_end = now
        stall += max(0.0, now - play_end)
        play_end = max(play_end, now) + len(chunk) / sample_rate
        samples += len(chunk)
        count += 1
    total = time.perf_counter() - t0
    return {"first_audio_s": first or total, "total_s": total, "audio_s": samples / sample_rate,
            "chunks": count, "playback_stall_s": stall}


def median_call_ms(fn: Callable[[], T], warm: int = 2, reps: int = 5) -> tuple[float, T]:
    """Median wall ms of ``fn()`` with the GPU synchronized after each call, after ``warm`` untimed
    calls; and the last call's result."""
    import torch

    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        walls.append((time.perf_counter() - t0) * 1000)
    return statistics.median(walls), out


def graph_ms_per_step(decoder: Any, batch: int, length: int, reps: int = 100) -> float:
    """GPU time of one captured T3 decode step: the (batch, length) graph replayed back to back
    with no host work between (the decoder must be idle)."""
    import torch

    with torch.cuda.stream(decoder._stream):  # a graph not captured yet is captured here
        graph = decoder._graph(batch, length)
        decoder.pos_buf[:batch] = length - 128  # the fused step attends up to each row's position
        for _ in range(5):
            graph.replay()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            graph.replay()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        decoder.pos_buf.zero_()
    return dt * 1000 / reps


def t3_one_stream_ms_per_token(decoder: Any, cond: Any, ids: Any, tokens: int) -> float:
    """Wall ms per token of one stream alone through the T3 scheduler (host work included)."""
    from voxgate_server.engines.chatterbox_fast import SamplingParams

    t0 = time.perf_counter()
    got = decoder.submit(cond, ids, SamplingParams(), tokens).result(600)
    return (time.perf_counter() - t0) * 1000 / len(got)


def t3_burst_speed(decoder: Any, cond: Any, ids: Any, tokens: int, streams: int) -> tuple[float, float]:
    """``streams`` streams (seeds 0..streams-1) submitted together to the T3 scheduler: wall ms
    per decode step (each step serves every row in the batch) and tokens per second in all."""
    from voxgate_server.engines.chatterbox_fast import SamplingParams

    steps0 = decoder.steps
    t0 = time.perf_counter()
    futures = [decoder.submit(cond, ids, SamplingParams(seed=i), tokens) for i in range(streams)]
    total = sum(len(f.result(600)) for f in futures)
    dt = time.perf_counter() - t0
    return 1000 * dt / max(1, decoder.steps - steps0), total / dt


def prefix_match(a: list[int], b: list[int]) -> int:
    """How many leading tokens two greedy runs share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def smi_process_mib(pid: int) -> int | None:
    """nvidia-smi's used GPU memory of process ``pid`` in MiB (None: not on the GPU); raises
    when nvidia-smi cannot be run."""
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=5).stdout
    for line in out.strip().splitlines():
        row_pid, mem = (x.strip() for x in line.split(","))
        if int(row_pid) == pid:
            return int(mem)
    return None


def vram_breakdown(torch: Any) -> dict[str, Any]:
    """Where the process's GPU memory is, now, in GiB: what the driver counts as used on the
    device (this process alone on it: the CUDA context, library handles and workspaces, and
    every allocator segment), what PyTorch's allocator has reserved, split into its default pool
    and the private pools CUDA graphs keep (one per pool id), and what of each is allocated."""
    gib = 2**30
    free, total = torch.cuda.mem_get_info()
    pools: dict[str, list[float]] = {}
    for seg in torch.cuda.memory_snapshot():
        pool = seg.get("segment_pool_id", (0, 0))
        key = "default" if tuple(pool) == (0, 0) else "graph pool %s" % (tuple(pool),)
        row = pools.setdefault(key, [0.0, 0.0])
        row[0] += seg["total_size"] / gib
        row[1] += seg["allocated_size"] / gib
    reserved = torch.cuda.memory_reserved() / gib
    return {"device_used": round((total - free) / gib, 3), "reserved": round(reserved, 3),
            "outside_allocator": round((total - free) / gib - reserved, 3),
            "allocated": round(torch.cuda.memory_allocated() / gib, 3),
            "pools": {k: {"reserved": round(v[0], 3), "allocated": round(v[1], 3)} for k, v in sorted(pools.items())}}


def launch_timeline(steps: list[tuple[float, str, int]], calls: list[tuple[str, int, bool, int, float, float]],
                    ms: Callable[[float], float]) -> dict[str, Any]:
    """One burst's T3 launches and S3Gen calls (the decoder's and the worker's ``trace``), on the
    burst's clock ``ms``: the decode steps, their mean rows and the gaps between their launches
    (a step's GPU time is ~1-1.5 ms, so longer gaps are the host's), the prefills (ms, rows), and
    each S3Gen call (stage, pieces, replayed, graphs captured, start ms, duration ms)."""
    launches = [t for t, kind, _ in steps if kind == "step"]
    gaps = np.diff(np.array(launches)) * 1000 if len(launches) > 1 else np.zeros(0)
    slow = gaps[gaps > 3.0]
    return {
        "steps": len(launches),
        "step_rows_mean": round(statistics.mean(r for _, k, r in steps if k == "step"), 2) if launches else 0,
        "step_gap_ms": {"median": round(float(np.median(gaps)), 3) if gaps.size else None,
                        "p90": round(float(np.percentile(gaps, 90)), 3) if gaps.size else None,
                        "max": round(float(gaps.max()), 2) if gaps.size else None,
                        "over_3ms": int(slow.size), "over_3ms_sum": round(float(slow.sum()), 1)},
        "prefills": [[ms(t), n] for t, kind, n in steps if kind == "prefill"],
        "calls": [[s, n, g, c, ms(t0), round((t1 - t0) * 1000, 1)] for s, n, g, c, t0, t1 in calls],
    }
