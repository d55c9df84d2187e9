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


REF_TEXT = ("This clip becomes a voice in the library. It is spoken by Piper, it is longer than five "
            "seconds, and its hash is what the manager's cache key takes.")


def test_clip_hash_from_the_real_server_is_in_the_key_and_a_replaced_clip_changes_it(server_factory, tmp_path):
    """No CPU engine clones, so the list entry is the one a cloning engine serves (tests/chatterbox
    checks Chatterbox lists the same hash); the hash itself comes from a real Piper server's voice
    library, and the clip is replaced on that server directly, not through the manager."""
    import asyncio

    from voxgate_manager.cache.key import cache_key
    from voxgate_manager.catalog import Catalog

    voices = tmp_path / "voices"
    voices.mkdir()
    srv = server_factory({"VOXGATE_VOICES_DIR": str(voices)})
    clip = httpx.post(f"{srv.url}/v1/audio/speech", timeout=120,
                      json={"model": "tts-1", "voice": "alloy", "input": REF_TEXT, "response_format": "wav"}).content
    up = httpx.post(f"{srv.url}/v1/audio/voices", files={"file": ("clip.wav", clip)}, data={"name": "clip"}, timeout=60)
    assert up.status_code == 201, up.text

    purged: list[tuple[str, str | None]] = []
    manager = SimpleNamespace(gateway=SimpleNamespace(voices_changed=lambda m, v: purged.append((m, v))))
    catalog = Catalog(manager)  # type: ignore[arg-type]
    ctl = SimpleNamespace(id="cloner")

    def listed() -> list[dict]:
        """The model's voice list as a cloning engine reports it, from the server's own entry."""
        v = httpx.get(f"{srv.url}/v1/audio/voices/clip").json()
        return [{"id": v["id"], "name": v["name"], "model": "cloner", "builtin": False, "sha256": v["sha256"]},
                {"id": "alloy", "name": "alloy", "model": "cloner", "alias_of": "clip"}]

    def seen(voices_list: list[dict]) -> None:  # what refresh() does with a fetched list
        old = catalog.reports.get("cloner", {}).get("voices") or []
        catalog.reports["cloner"] = {"voices": voices_list}
        catalog._clips_changed("cloner", old, voices_list)

    payload = {"model": "cloner", "input": "Hello.", "voice": "clip", "response_format": "mp3"}
    assert catalog.voice_hash(ctl, "clip") is None  # nothing seen yet: the key has no hash
    unhashed = cache_key("cloner", payload, catalog.voice_hash(ctl, "clip"))
    seen(listed())
    h1 = catalog.voice_hash(ctl, "clip")
    assert h1 == hashlib.sha256(clip).hexdigest()
    assert catalog.voice_hash(ctl, {"id": "clip"}) == h1 and catalog.voice_hash(ctl, "alloy") == h1  # alias
    key1 = cache_key("cloner", payload, h1)
    assert key1 != unhashed

    # replaced on the server behind the manager's back: same name, other audio
    other = httpx.post(f"{srv.url}/v1/audio/speech", timeout=120,
                       json={"model": "tts-1", "voice": "alloy", "input": REF_TEXT + " Another take.",
                             "response_format": "wav"}).content
    (voices / ".swap").write_bytes(other)
    (voices / ".swap").replace(voices / "clip.wav")
    assert cache_key("cloner", payload, catalog.voice_hash(ctl, "clip")) == key1  # not seen yet: old key
    seen(listed())
    h2 = catalog.voice_hash(ctl, "clip")
    assert h2 == hashlib.sha256(other).hexdigest() != h1
    assert cache_key("cloner", payload, h2) != key1
    assert purged == [("cloner", "clip")]  # the old clip's answers go once the change is seen
    seen(listed())
    assert purged == [("cloner", "clip")]  # an unchanged list purges nothing

    # the real refresh against the real server: Piper lists no cloned voice, so the clip's hash is gone
    async def refresh() -> None:
        async with httpx.AsyncClient() as http:
            manager.http = http
            real = SimpleNamespace(id="cloner", spec=SimpleNamespace(upstream_model="piper", api_key=None),
                                   runtime=SimpleNamespace(base_url=srv.url))
            await catalog.refresh(real)  # type: ignore[arg-type]

    asyncio.run(refresh())
    assert catalog.voice_hash(ctl, "clip") is None and purged[-1] == ("cloner", "clip")


def test_a_voice_changed_through_the_manager_is_read_back_at_the_next_tick(mgr, tmp_path):
    """The catalog (and the clip hashes the cache key takes from it) re-reads the model's list right
    after a voice change it proxied, not at the next 60 s refresh."""
    import json

    voices = tmp_path / "voices"
    voices.mkdir()
    model = piper_process_model("piper")
    model["runtime"]["environment"]["VOXGATE_VOICES_DIR"] = str(voices)
    catalog_file = tmp_path / "catalog.json"
    m = mgr([model], VOXGATE_MANAGER_CATALOG_CACHE=str(catalog_file))
    clip = speech(m.url, text=REF_TEXT, fmt="wav").content  # starts piper; the catalog reads it once
    deadline = time.monotonic() + 10
    while not catalog_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    first_seen = json.loads(catalog_file.read_text())["piper"]["seen_at"]
    time.sleep(1.0)
    changed_at = time.time()
    up = httpx.post(f"{m.url}/v1/audio/voices", files={"file": ("clip.wav", clip)}, data={"name": "clip"}, timeout=60)
    assert up.status_code == 201, up.text
    deadline = time.monotonic() + 5
    seen = first_seen
    while seen < changed_at and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = json.loads(catalog_file.read_text())["piper"]["seen_at"]
    assert seen >= changed_at, (first_seen, changed_at, seen)
