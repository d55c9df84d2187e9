"""NVIDIA's CUDA checkpoint driver API through ctypes, and the helper process that drives it.

``cuCheckpointProcessLock/Checkpoint/Restore/Unlock`` (libcuda, driver 550 and later; what the
``cuda-checkpoint`` utility calls) act on *another* process, named by its PID: checkpointing
copies all of its device memory to host memory and releases the GPU; restoring maps it back at
the same device addresses, so CUDA graphs captured before replay unchanged afterwards. A process
cannot lock itself (its own CUDA calls would wait on the lock), so the server starts this module
as a small child process (``python -m voxgate_server.engines.gpu.cuda_checkpoint serve PID``)
and sends it one command a line; ``helper.CheckpointHelper`` is that side.

The helper never creates a CUDA context: it needs ``cuInit`` only, so it holds no GPU memory.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from pathlib import Path

REQUIRED_SYMBOLS = ("cuCheckpointProcessLock", "cuCheckpointProcessCheckpoint",
                    "cuCheckpointProcessRestore", "cuCheckpointProcessUnlock", "cuCheckpointProcessGetState")
STATES = {0: "running", 1: "locked", 2: "checkpointed", 3: "failed"}


class CheckpointError(Exception):
    """A driver call failed; the message names the call and CUDA's error name."""


class _LockArgs(ctypes.Structure):
    # CUcheckpointLockArgs: timeoutMs, reserved0, reserved1[7]
    _fields_ = [("timeoutMs", ctypes.c_uint), ("reserved0", ctypes.c_uint), ("reserved1", ctypes.c_uint64 * 7)]


class _Args(ctypes.Structure):
    # CUcheckpointCheckpointArgs / RestoreArgs / UnlockArgs: 64 bytes, all zero = the defaults
    _fields_ = [("reserved", ctypes.c_uint64 * 8)]


def is_wsl() -> bool:
    """WSL2's GPU (/dev/dxg) goes through Windows' driver, which has no checkpoint support."""
    try:
        return "microsoft" in Path("/proc/version").read_text().lower() or Path("/dev/dxg").exists()
    except OSError:
        return False


def load_libcuda() -> ctypes.CDLL:
    names = ("libcuda.so.1", "libcuda.so") if sys.platform != "win32" else ("nvcuda.dll",)
    last: OSError | None = None
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            last = exc
    raise CheckpointError(f"libcuda not found: {last}")


def has_libcuda() -> bool:
    """Whether this host has a CUDA driver library at all (tests pick their side by it)."""
    try:
        load_libcuda()
        return True
    except CheckpointError:
        return False


def probe() -> tuple[bool, str]:
    """(supported, why): whether this host's driver has the checkpoint API. Loads libcuda and
    asks its version only (no cuInit, no context)."""
    if sys.platform != "linux":
        return False, f"CUDA checkpoint needs Linux (this is {sys.platform})"
    if is_wsl():
        return False, "WSL2: the Windows GPU driver has no CUDA checkpoint API"
    try:
        lib = load_libcuda()
    except CheckpointError as exc:
        return False, str(exc)
    missing = [s for s in REQUIRED_SYMBOLS if not hasattr(lib, s)]
    version = ctypes.c_int(0)
    try:
        lib.cuDriverGetVersion(ctypes.byref(version))
    except AttributeError:
        pass
    v = f"{version.value // 1000}.{version.value % 1000 // 10}"
    if missing:
        return False, f"the driver (CUDA {v}) lacks {missing[0]}: driver 550 or later is needed"
    return True, f"CUDA driver API {v}"


class DriverCheckpoint:
    """The five calls, with errors turned into ``CheckpointError``."""

    def __init__(self) -> None:
        self.lib = load_libcuda()
        self._check(self.lib.cuInit(0), "cuInit")

    def _check(self, rc: int, what: str) -> None:
        if rc == 0:
            return
        name = ctypes.c_char_p()
        try:
            self.lib.cuGetErrorName(rc, ctypes.byref(name))
        except AttributeError:
            pass
        raise CheckpointError(f"{what} failed: {(name.value or b'').decode() or 'CUDA error'} ({rc})")

    def state(self, pid: int) -> str:
        value = ctypes.c_int(-1)
        self._check(self.lib.cuCheckpointProcessGetState(ctypes.c_int(pid), ctypes.byref(value)),
                    "cuCheckpointProcessGetState")
        return STATES.get(value.value, str(value.value))

    def lock(self, pid: int, timeout_ms: int) -> None:
        args = _LockArgs(timeoutMs=timeout_ms)
        self._check(self.lib.cuCheckpointProcessLock(ctypes.c_int(pid), ctypes.byref(args)), "cuCheckpointProcessLock")

    def checkpoint(self, pid: int) -> None:
        self._check(self.lib.cuCheckpointProcessCheckpoint(ctypes.c_int(pid), ctypes.byref(_Args())),
                    "cuCheckpointProcessCheckpoint")

    def restore(self, pid: int) -> None:
        self._check(self.lib.cuCheckpointProcessRestore(ctypes.c_int(pid), ctypes.byref(_Args())),
                    "cuCheckpointProcessRestore")

    def unlock(self, pid: int) -> None:
        self._check(self.lib.cuCheckpointProcessUnlock(ctypes.c_int(pid), ctypes.byref(_Args())),
                    "cuCheckpointProcessUnlock")

    def park(self, pid: int, timeout_ms: int) -> dict[str, float]:
        """Lock (waits for submitted work, blocks new CUDA calls), then checkpoint. A failed
        checkpoint unlocks again so the process is never left frozen."""
        t0 = time.perf_counter()
        self.lock(pid, timeout_ms)
        t1 = time.perf_counter()
        try:
            self.checkpoint(pid)
        except CheckpointError:
            self.unlock(pid)
            raise
        return {"lock_s": t1 - t0, "checkpoint_s": time.perf_counter() - t1}

    def wake(self, pid: int) -> dict[str, float]:
        t0 = time.perf_counter()
        if self.state(pid) == "checkpointed":
            self.restore(pid)
        t1 = time.perf_counter()
        if self.state(pid) == "locked":
            self.unlock(pid)
        return {"restore_s": t1 - t0, "unlock_s": time.perf_counter() - t1}


def serve(pid: int, stdin=sys.stdin, stdout=sys.stdout) -> None:  # noqa: ANN001 - text streams
    """One JSON answer a command line: ``park TIMEOUT_MS``, ``wake``, ``state``; ends at EOF."""
    try:
        driver = DriverCheckpoint()
        hello: dict[str, object] = {"ok": True, "ready": True}
    except CheckpointError as exc:
        driver, hello = None, {"ok": False, "error": str(exc)}
    stdout.write(json.dumps(hello) + "\n")
    stdout.flush()
    for line in stdin:
        parts = line.split()
        if not parts:
            continue
        try:
            if driver is None:
                raise CheckpointError(str(hello["error"]))
            if parts[0] == "park":
                answer: dict[str, object] = {"ok": True, **driver.park(pid, int(parts[1]) if len(parts) > 1 else 0)}
            elif parts[0] == "wake":
                answer = {"ok": True, **driver.wake(pid)}
            elif parts[0] == "state":
                answer = {"ok": True}
            else:
                raise CheckpointError(f"unknown command {parts[0]!r}")
            answer["state"] = driver.state(pid)
        except (CheckpointError, ValueError) as exc:
            answer = {"ok": False, "error": str(exc)}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "serve":
        serve(int(args[1]))
        return 0
    if len(args) == 1 and args[0] == "probe":
        ok, why = probe()
        print(json.dumps({"supported": ok, "reason": why}))
        return 0 if ok else 1
    print("usage: python -m voxgate_server.engines.gpu.cuda_checkpoint serve PID | probe", file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("CUDA_MODULE_LOADING", "LAZY")
    raise SystemExit(main())
