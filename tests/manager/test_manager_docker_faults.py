"""Faults whose cause is Docker's, on the real engine (issue 17): a `docker stop` by hand is an external
stop, not a crash; a restart of dockerd while a model is ready does not leave a dead model `ready`.

The dockerd restart is real (the daemon's own command line, stopped and started again) and kept short;
the daemon is shared, so the test brings it back in every case."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from audio_check import decode
from manager_harness import speech
from test_manager_docker import container, dclient, docker_model, instance, mgr_factory  # noqa: F401 (fixtures)

DOCKERD_LOG = os.environ.get("DOCKERD_LOG", "/tmp/dockerd.log")


def test_docker_stop_by_hand_is_an_external_stop_not_a_crash(dclient, instance, mgr_factory):
    m = mgr_factory([docker_model(instance)])
    assert speech(m.url).status_code == 200
    container(dclient, instance).stop(timeout=5)
    m.wait_state("piper", "stopped", timeout=30)
    st = m.status("piper")
    assert st["last_exit"]["reason"] == "external" and st["failures"] == 0, st
    assert m.metric("voxgate_manager_crashes_total", model="piper") == 0
    assert m.metric("voxgate_manager_stops_total", model="piper", reason="external") == 1
    r = speech(m.url, timeout=180)  # the next request starts it again, with no backoff
    assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
    assert len(m.events("start", "piper")) == 2


def _dockerd_pid() -> int:
    out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    if not out:
        pytest.skip("no local dockerd process to restart (DOCKER_HOST elsewhere?)")
    return int(out[0])


def _wait_engine(dclient, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0:
                dclient.ping()
                return True
        except Exception:
            pass
        time.sleep(0.5)
    return False


def restart_dockerd(dclient) -> list[bytes]:
    """Stop the running dockerd (SIGTERM, as a service manager does) and start the same command line
    again, as scripts/ci/docker-up.sh does; returns that command line."""
    pid = _dockerd_pid()
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        cmdline = [a for a in fh.read().split(b"\0") if a]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), "dockerd did not stop within 60 s"
    _start_dockerd(cmdline)
    assert _wait_engine(dclient, 60), "dockerd did not come back within 60 s"
    return cmdline


def _start_dockerd(cmdline: list[bytes]) -> None:
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen(cmdline, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_dockerd_restart_while_ready_next_request_is_served(dclient, instance, mgr_factory):
    m = mgr_factory([docker_model(instance, restart_backoff_s=0.5)])
    assert speech(m.url).status_code == 200
    assert m.status("piper")["state"] == "ready"
    cmdline = None
    try:
        cmdline = restart_dockerd(dclient)
    finally:
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:  # never leave the shared daemon down
            _start_dockerd(cmdline or [b"dockerd"])
            _wait_engine(dclient, 60)
    r = speech(m.url, timeout=180)
    assert r.status_code == 200, r.text
    assert decode(r.content, "wav").duration > 0.3
    st = m.status("piper")
    assert st["state"] == "ready" and st["last_exit"] is not None, st  # the exit was seen and recorded
    assert container(dclient, instance).status == "running"
    assert "Traceback" not in m.log()


def test_paused_container_is_detected_and_restarted(dclient, instance, mgr_factory):
    """`docker pause` freezes every process of the model (as SIGSTOP does) while its port stays open."""
    m = mgr_factory([docker_model(instance, liveness={"interval_s": 1, "timeout_s": 1, "failures": 2})])
    assert speech(m.url).status_code == 200
    c = container(dclient, instance)
    c.pause()
    try:
        t0 = time.monotonic()
        r = speech(m.url, timeout=60)
        took = time.monotonic() - t0
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unresponsive", r.text
        assert took < 2 * (1 + 1) + 3, took
        r = speech(m.url, timeout=180)  # the frozen container was stopped; the next request starts it again
        assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
        assert m.metric("voxgate_manager_crashes_total", model="piper", reason="health") == 1
    finally:
        c.reload()
        if c.status == "paused":
            c.unpause()
