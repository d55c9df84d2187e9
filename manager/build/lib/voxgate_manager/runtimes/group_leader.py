"""``python -m voxgate_manager.runtimes.group_leader --parent PID --grace S -- ARGV...``

Runs a process model's command so that nothing of it outlives the manager, whatever the command is.
The kernel's die-with-parent signal (PR_SET_PDEATHSIG) reaches only a direct child: a ``command``
that wraps the server (``bash -c "...; python -m voxgate_server.cli ..."``) left the server orphaned
on its port when the manager was SIGKILLed. This small leader is that direct child instead: it leads
the model's own session and process group, adopts orphaned descendants (PR_SET_CHILD_SUBREAPER),
and when the manager dies it signals the whole group (SIGTERM, SIGKILL after ``grace`` seconds).
Its exit status is the command's, so the manager reports the model's own exit code.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _signal_group(sig: int) -> None:
    try:
        os.killpg(os.getpgrp(), sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    opts, command = argv[:sep], argv[sep + 1:]
    parent = int(opts[opts.index("--parent") + 1])
    grace = float(opts[opts.index("--grace") + 1])
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    ending: list[float] = []  # when a SIGTERM reached us (from the manager's stop, or its death)

    def on_term(signum: int, frame: object) -> None:
        if ending:
            return  # our own group signal coming back to us
        ending.append(time.monotonic())
        _signal_group(signal.SIGTERM)
        _signal_group(signal.SIGCONT)  # a stopped (hung) member must be able to act on it

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the manager's to handle
    if os.getppid() != parent:  # the manager died before the die-with-parent signal was set
        return 1
    try:
        # the command itself also dies with us if we are killed outright (SIGKILL skips our handler)
        child = subprocess.Popen(command, preexec_fn=lambda: _prctl(PR_SET_PDEATHSIG, signal.SIGTERM))
    except OSError as exc:
        print(f"voxgate-manager: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127
    while True:
        try:
            code = child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if ending and time.monotonic() - ending[0] > grace:
                _signal_group(signal.SIGKILL)  # ourselves included: nothing is left behind
    # reap what the command left behind in the group (its workers, a wrapper's children)
    ending.append(time.monotonic())
    _signal_group(signal.SIGTERM)
    deadline = time.monotonic() + min(grace, 2.0)
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.05)
        except ChildProcessError:
            break
    else:
        _signal_group(signal.SIGKILL)
    if code < 0:  # killed by a signal: die by the same one, so the manager sees it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
