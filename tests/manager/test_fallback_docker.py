"""Fallback chains with the docker runtime: the real CPU image (voxgate/tts-server:cpu) on the real
Docker engine. Same skip/fail rule and fixtures as test_manager_docker.py."""

from __future__ import annotations

import time

from audio_check import decode
from manager_harness import speech
from test_manager_docker import container, dclient, docker_model, instance, mgr_factory  # noqa: F401 - fixtures


def test_a_container_not_ready_in_time_is_answered_by_the_next_container_while_it_keeps_starting(dclient, instance, mgr_factory):
    # "gpu" runs the real image but its readiness asks for a state the server never reports: a model
    # whose start takes as long as a big GPU model's would (until start_timeout_s)
    gpu = docker_model(instance, "gpu", aliases=[], fallback=["piper"], fallback_after_s=2, start_timeout_s=60,
                       readiness={"path": "/health", "json_field": "status", "json_value": "still-loading"})
    m = mgr_factory([gpu, docker_model(instance, "piper", aliases=[])])
    assert speech(m.url, "piper").status_code == 200  # the fallback's container runs
    t0 = time.monotonic()
    r = speech(m.url, "gpu", "The GPU container is still loading.")
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    waited = m.events("fallback", "gpu")[-1]["passed"][0]["waited_s"]
    assert 2.0 <= waited < 2.5  # handed over at fallback_after_s; then Piper's synthesis (see test_fallback.py)
    assert took < 8.0, took
    assert r.headers["x-voxgate-model"] == "piper" and r.headers["x-voxgate-fallback"] == "cold_start"
    assert decode(r.content, "wav").duration > 0.5
    assert m.status("gpu")["state"] == "starting"
    assert container(dclient, instance, "gpu").status == "running"  # it keeps starting in the background


def test_a_crashed_container_is_answered_by_the_fallback_and_restarted(dclient, instance, mgr_factory):
    m = mgr_factory([docker_model(instance, "gpu", aliases=[], fallback=["piper"], fallback_after_s=0.3),
                     docker_model(instance, "piper", aliases=[])])
    assert speech(m.url, "gpu").status_code == 200 and speech(m.url, "piper").status_code == 200
    container(dclient, instance, "gpu").kill()
    m.wait_state("gpu", "failed", 20)
    r = speech(m.url, "gpu", "After the crash.")
    assert r.status_code == 200, r.text
    assert r.headers["x-voxgate-model"] == "piper" and r.headers["x-voxgate-fallback"] == "crashed"
    m.wait_state("gpu", "ready", 90)
    assert speech(m.url, "gpu").headers["x-voxgate-model"] == "gpu"
