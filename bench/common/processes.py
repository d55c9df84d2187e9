"""Ending the processes a bench starts (servers, managers)."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, so the server shuts down as it would in service; SIGKILL if it has not exited
    within ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
