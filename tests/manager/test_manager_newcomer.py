"""The newcomer's path (issue 17): a taken admin port fails before anything is announced, naming the
port and the setting; the status command scripts/run.sh prints works exactly as printed."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from manager_harness import PYTHONPATH, ROOT, piper_process_model
from ports import free_port


def test_admin_port_taken_fails_before_announcing(tmp_path):
    (tmp_path / "models.json").write_text('{"models": [%s]}' % __import__("json").dumps(piper_process_model()))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        public = free_port()
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "voxgate_manager.cli", "--config", str(tmp_path / "models.json"),
             "--port", str(public), "--admin-port", str(taken)],
            env={**os.environ, "PYTHONPATH": PYTHONPATH}, capture_output=True, text=True, timeout=60,
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert f"127.0.0.1:{taken}" in out and "admin API" in out and "VOXGATE_MANAGER_ADMIN_PORT" in out, out
    assert "Uvicorn running" not in out and "voxgate-manager on" not in out, out  # nothing announced
    assert "Traceback" not in out
    with socket.socket() as s:  # and the public port was let go
        s.bind(("127.0.0.1", public))
    assert time.monotonic() - t0 < 30


def test_public_port_taken_names_its_setting(tmp_path):
    (tmp_path / "models.json").write_text('{"models": [%s]}' % __import__("json").dumps(piper_process_model()))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "voxgate_manager.cli", "--config", str(tmp_path / "models.json"),
             "--port", str(taken), "--admin-port", str(free_port())],
            env={**os.environ, "PYTHONPATH": PYTHONPATH}, capture_output=True, text=True, timeout=60,
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "VOXGATE_MANAGER_PORT" in out and str(taken) in out, out


def test_run_sh_prints_a_status_command_that_works_as_printed(tmp_path):
    """scripts/run.sh with a venv whose entry points run this worktree's code (a venv built by the
    script itself is what CI's fresh-machine run covers); the printed command is run verbatim."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, module in (("voxgate-manager", "voxgate_manager.cli"), ("voxgate-server", "voxgate_server.cli")):
        script = venv / "bin" / name
        script.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(PYTHONPATH)} exec {shlex.quote(sys.executable)} -m {module} \"$@\"\n")
        script.chmod(0o755)
    port, admin = free_port(), free_port()
    env = {**os.environ, "VOXGATE_VENV": str(venv), "VOXGATE_MANAGER_PORT": str(port), "VOXGATE_MANAGER_ADMIN_PORT": str(admin)}
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "run.sh")], env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        m = re.search(r"with: (\S+ status)$", log.read_text(), re.M)
        assert m, log.read_text()
        # run as printed, from another directory, with the venv nowhere on PATH
        clean_path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if "venv" not in p)
        out = subprocess.run(m.group(1), shell=True, cwd="/", capture_output=True, text=True, timeout=30,
                             env={**env, "PATH": clean_path or "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr
        assert re.search(r"^piper\s+stopped\s+process", out.stdout, re.M), out.stdout
    finally:
        proc.terminate()
        proc.wait(30)


def test_started_server_process_is_logged_once(tmp_path):
    from manager_harness import ManagerProcess

    m = ManagerProcess(tmp_path, [piper_process_model()])
    try:
        log = m.log()
    finally:
        m.stop()
    assert log.count("Started server process") == 1, log
