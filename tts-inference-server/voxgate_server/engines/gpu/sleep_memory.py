"""Parking where the driver has no checkpoint API: the process's device memory made through the
driver's virtual-memory calls, so it can be given back and re-made at the same addresses.

This is the sleep mode of vLLM and SGLang. Here it is SGLang's ``torch_memory_saver``, a small
maintained library with binary wheels for CUDA 12 and 13, rather than an allocator of our own.
Its preload library replaces ``cudaMalloc``/``cudaFree`` for the whole process: each allocation
is a reserved address range backed by ``cuMemCreate`` + ``cuMemMap``. ``pause`` copies every
allocation to pinned host memory and releases the physical memory, keeping the reservations.
``resume`` backs the same ranges again and copies the bytes back. Pointers never change, so the
CUDA graphs captured at start-up replay unchanged, as they do after a driver checkpoint.

The library must be in ``LD_PRELOAD`` before the process starts. ``voxgate-server`` therefore
re-executes itself once with that environment when this mechanism is chosen
(``prepare_process``). That happens before torch or any thread is started, and the PID stays
the same. Differences from ``cuda-checkpoint``:

- the CUDA context and the kernels' code stay on the GPU while parked (about 0.6 GiB on an H200);
- PyTorch's expandable segments are turned off, because they map memory themselves and would
  bypass ``cudaMalloc``.

``VOXGATE_PARK_MECHANISM``:
- ``auto`` (the default): ``cuda-checkpoint`` where the driver has it, this one otherwise;
- ``cuda-checkpoint`` or ``allocator``: only that mechanism;
- ``stop``: no parking, so a manager stops the server instead.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("voxgate.engine.gpu.sleep_memory")

MECHANISMS = ("auto", "cuda-checkpoint", "allocator", "stop")
MARKER = "VOXGATE_SLEEP_MEMORY"  # "1" in a process re-executed with the preload library
PACKAGE = "torch_memory_saver"


def requested(environ: Mapping[str, str] | None = None) -> str:
    """The park mechanism asked for in ``VOXGATE_PARK_MECHANISM`` (``auto`` when it is unset).
    An unknown value raises ``ValueError`` that names the accepted ones."""
    value = (environ if environ is not None else os.environ).get("VOXGATE_PARK_MECHANISM", "auto").strip().lower()
    if value not in MECHANISMS:
        raise ValueError(f"VOXGATE_PARK_MECHANISM={value!r}: expected one of {', '.join(MECHANISMS)}")
    return value


def _site_dir(module: str) -> Path | None:
    """The directory that holds ``module``'s package, found without importing it. Importing torch
    here would cost seconds and start CUDA-related threads before the re-exec."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


def torch_cuda_major() -> int | None:
    """The CUDA major version torch was built for, read from ``torch/version.py`` (None: a CPU
    build, or no torch)."""
    site = _site_dir("torch")
    if site is None:
        return None
    try:
        text = (site / "torch" / "version.py").read_text()
    except OSError:
        return None
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"](\d+)\.", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def preload_library(cuda_major: int) -> Path | None:
    """The library's ``cudaMalloc`` hook for this CUDA major, as its wheel ships it."""
    site = _site_dir(PACKAGE)
    if site is None:
        return None
    for name in (f"torch_memory_saver_hook_mode_preload_cu{cuda_major}.abi3.so",
                 *(["torch_memory_saver_hook_mode_preload.abi3.so"] if cuda_major == 12 else [])):
        if (site / name).is_file():
            return site / name
    return None


def cudart_dir(cuda_major: int) -> Path | None:
    """The directory of the CUDA runtime library that torch's wheel loads (the ``nvidia-*`` wheels).
    The hook links ``libcudart.so.N`` but has no run path of its own, so the loader must find the
    same file that torch finds. None when the system's loader path has it anyway."""
    name = f"libcudart.so.{cuda_major}"
    site = _site_dir("torch")
    for base in ([site / "nvidia"] if site is not None else []):
        for candidate in sorted(base.glob(f"*/lib/{name}")):
            return candidate.parent
    return None


def unavailable_reason() -> str | None:
    """Why the allocator mechanism cannot be used on this machine, or None when it can."""
    if sys.platform != "linux":
        return f"the allocator mechanism needs Linux (this is {sys.platform})"
    if importlib.util.find_spec(PACKAGE) is None:
        return f"{PACKAGE} is not installed (pip install {PACKAGE}; the gpu image has it)"
    major = torch_cuda_major()
    if major is None:
        return "torch has no CUDA"
    if preload_library(major) is None:
        return f"{PACKAGE} has no preload library for CUDA {major}"
    from voxgate_server.engines.gpu.cuda_checkpoint import has_libcuda

    if not has_libcuda():
        return "no CUDA driver (libcuda) on this machine"
    return None


def chosen(environ: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(mechanism for this process, why not another one). ``auto`` takes ``cuda-checkpoint`` when
    the driver has it, else ``allocator`` when it can run; else ``stop``. Decided before the
    process starts its engines, because the allocator needs a re-exec."""
    from voxgate_server.engines.gpu.cuda_checkpoint import probe

    want = requested(environ)
    if want == "stop":
        return "stop", "VOXGATE_PARK_MECHANISM=stop"
    if want == "allocator":
        why = unavailable_reason()
        return ("allocator", None) if why is None else ("stop", why)
    ok, checkpoint_why = probe()
    if ok:
        return "cuda-checkpoint", None
    if want == "cuda-checkpoint":
        return "stop", checkpoint_why
    why = unavailable_reason()
    if why is None:
        return "allocator", f"cuda-checkpoint: {checkpoint_why}"
    return "stop", f"cuda-checkpoint: {checkpoint_why}; allocator: {why}"


def process_env(environ: Mapping[str, str], library: Path, runtime_dir: Path | None) -> dict[str, str]:
    """The environment to re-execute the server with: the hook preloaded, every allocation of
    every thread made through it with a host backup (``TMS_INIT_ENABLE*``: the library's own
    switches), and expandable segments off."""
    env = dict(environ)
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p and PACKAGE not in p]
    env["LD_PRELOAD"] = ":".join([str(library), *preload])
    if runtime_dir is not None:
        paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        if str(runtime_dir) not in paths:
            env["LD_LIBRARY_PATH"] = ":".join([str(runtime_dir), *paths])
    env["TMS_INIT_ENABLE"] = "1"
    env["TMS_INIT_ENABLE_CPU_BACKUP"] = "1"
    conf = [part for part in env.get("PYTORCH_CUDA_ALLOC_CONF", "").split(",")
            if part.strip() and not part.strip().startswith("expandable_segments")]
    if conf:
        env["PYTORCH_CUDA_ALLOC_CONF"] = ",".join(conf)
    else:
        env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    env[MARKER] = "1"
    return env


def active(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs with the hook (started by ``prepare_process``)."""
    env = environ if environ is not None else os.environ
    return env.get(MARKER) == "1" and PACKAGE in env.get("LD_PRELOAD", "")


def prepare_process(argv: list[str]) -> None:
    """Re-execute ``voxgate-server`` with the hook when the allocator is the chosen mechanism.
    This is called first thing in ``main``; without the allocator it returns and nothing changes.
    The decision is logged once the server logs: ``chosen`` is asked again then."""
    if active():
        return
    try:
        mechanism, _ = chosen()
    except ValueError as exc:
        raise SystemExit(f"voxgate-server: {exc}") from None
    if mechanism != "allocator":
        return
    major = torch_cuda_major()
    assert major is not None  # chosen() checked it
    library = preload_library(major)
    assert library is not None
    env = process_env(os.environ, library, cudart_dir(major))
    args = [sys.executable, "-m", "voxgate_server.cli", *argv]
    os.execve(sys.executable, args, env)


class SleepMemory:
    """Pause and resume every allocation made through the hook (the server's own process).

    The library ends the process when it is asked to resume memory that is not paused, or to
    pause memory that is. So this class keeps the state, and a repeated call does nothing: a wake
    that failed after the resume (the KV cache could not be re-mapped) can be retried."""

    def __init__(self, saver: Any = None) -> None:
        if saver is None:
            from torch_memory_saver import torch_memory_saver as saver  # its singleton: one hook a process
        self._saver = saver
        self.paused = False

    def pause(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        if not self.paused:
            self._saver.pause()
            self.paused = True
        return {"pause_s": time.perf_counter() - t0}

    def resume(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        if self.paused:
            self._saver.resume()
            self.paused = False
        return {"resume_s": time.perf_counter() - t0}
