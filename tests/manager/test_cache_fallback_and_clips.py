"""Issue 19's cache gaps: a fallback's own cached answer is served without starting it, and a
cloned voice's clip hash (as its server reports it) is part of the key."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from manager_harness import ManagerProcess, piper_process_model, speech
from test_fallback import slow_piper

TEXT = "The fallback has said this before."


@pytest.fixture
def mgr(tmp_path):
    started: list[ManagerProcess] = []

    def make(models, **env: str) -> ManagerProcess:
        m = ManagerProcess(tmp_path, models, env={"VOXGATE_MANAGER_DATA_DIR": str(tmp_path / "data"), **env})
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


def test_fallback_cached_answer_is_served_without_starting_the_fallback(mgr):
    m = mgr([slow_piper("big", 4, fallback=["piper"], fallback_after_s=1), piper_process_model("piper")])
    first = speech(m.url, model="piper", text=TEXT, fmt="mp3")  # piper's own answer, cached under its key
    assert first.status_code == 200 and first.headers["x-voxgate-cache"] == "miss"
    httpx.post(f"{m.admin_url}/admin/models/piper/unload", timeout=30).raise_for_status()
    assert m.status("piper")["state"] == "stopped"

    r = speech(m.url, model="big", text=TEXT, fmt="mp3")  # big is cold: the chain passes it after 1 s
    assert r.status_code == 200, r.text
    assert r.headers["x-voxgate-model"] == "piper" and r.headers["x-voxgate-cache"] == "hit"
    assert r.headers["x-voxgate-fallback"] == "cold_start" and r.headers["x-voxgate-requested-model"] == "big"
    assert r.content == first.content
    assert m.status("piper")["state"] == "stopped"  # the fallback was never started for it
    assert m.metric("voxgate_manager_cold_starts_total", model="piper") == 1
    assert m.metric("voxgate_manager_cache_requests_total", result="hit") == 1

    # big kept starting; once ready it answers (and caches) itself; then its own hit needs no start at all
    m.wait_state("big", "ready", 60)
    own = speech(m.url, model="big", text=TEXT, fmt="mp3")
    assert own.headers["x-voxgate-model"] == "big" and own.headers["x-voxgate-cache"] == "miss"
    for model in ("big", "piper"):
        httpx.post(f"{m.admin_url}/admin/models/{model}/unload", timeout=30)
    m.wait_state("big", "stopped", 30)
    again = speech(m.url, model="big", text=TEXT, fmt="mp3")
    assert again.headers["x-voxgate-model"] == "big" and again.headers["x-voxgate-cache"] == "hit"
    assert "x-voxgate-fallback" not in again.headers and again.content == own.content
    assert m.status("big")["state"] == "stopped" and m.status("piper")["state"] == "stopped"
    assert m.metric("voxgate_manager_cold_starts_total", model="big") == 1
    assert m.metric("voxgate_manager_cold_starts_total", model="piper") == 1
