"""The manager's response cache in front of a real cloning engine (chatterbox-turbo on the random
checkpoint): a cloned voice's clip hash, as the server lists it, is in the cache key, so a clip
replaced on the server directly (not through the manager) stops its old answer being served once
the manager's catalog has read the new list."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from turbo_helpers import encode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "manager"))
from manager_harness import ManagerProcess, piper_process_model  # noqa: E402


def turbo_model(ckpt: Path, voices: Path) -> dict:
    entry = piper_process_model("turbo", upstream_model="chatterbox-turbo", sampling=True,
                                start_timeout_s=240, hold_max_s=240)
    entry["runtime"]["environment"] = {
        "VOXGATE_LOG_LEVEL": "warning", "VOXGATE_ENGINES": "chatterbox-turbo", "VOXGATE_VOICES_DIR": str(voices),
        "VOXGATE_CHATTERBOX_CHECKPOINT_DIR": str(ckpt), "VOXGATE_CHATTERBOX_CHUNK_MAX_DURATION_S": "0.2",
        "VOXGATE_CHATTERBOX_MAX_DURATION_S": "0.4", "HF_HUB_OFFLINE": "1",
    }
    return entry


def test_clip_replaced_on_the_server_is_a_new_cache_key_once_the_catalog_saw_it(
        turbo_ckpt: dict[str, Path], reference_speech: tuple[np.ndarray, int], tmp_path: Path) -> None:
    voices = tmp_path / "voices"
    voices.mkdir()
    entry = turbo_model(turbo_ckpt["dir"], voices)
    server = f"http://127.0.0.1:{entry['runtime']['port']}"
    m = ManagerProcess(tmp_path, [entry], env={"VOXGATE_MANAGER_DATA_DIR": str(tmp_path / "data")})
    try:
        def say() -> httpx.Response:
            r = httpx.post(f"{m.url}/v1/audio/speech", timeout=300, json={
                "model": "turbo", "input": "Hello there.", "voice": "clip", "seed": 7, "response_format": "wav"})
            assert r.status_code == 200, r.text
            return r

        def listed_hash() -> str | None:
            """The manager's own list (it re-reads the ready model's list, the catalog refresh)."""
            body = httpx.get(f"{m.url}/v1/audio/voices", params={"model": "turbo"}, timeout=30).json()
            return {v["id"]: v for v in body["voices"]}.get("clip", {}).get("sha256")

        first_clip = encode(*reference_speech, "wav")
        start = httpx.post(f"{m.url}/v1/audio/speech", timeout=300, json={
            "model": "turbo", "input": "Warm up.", "voice": "default", "seed": 1, "response_format": "wav"})
        assert start.status_code == 200, start.text
        # the clip goes into the server's library directly, behind the manager's back
        up = httpx.post(f"{server}/v1/audio/voices", files={"file": ("clip.wav", first_clip)}, data={"name": "clip"},
                        timeout=60)
        assert up.status_code == 201 and up.json()["sha256"] == hashlib.sha256(first_clip).hexdigest()
        assert listed_hash() == hashlib.sha256(first_clip).hexdigest()
        a = say()
        assert a.headers["x-voxgate-cache"] == "miss"
        assert say().headers["x-voxgate-cache"] == "hit"

        second_clip = encode(reference_speech[0][::-1].copy(), reference_speech[1], "wav")
        (voices / ".swap").write_bytes(second_clip)
        os.replace(voices / ".swap", voices / "clip.wav")
        # the catalog has not read the list since: the old answer is what the cache still holds
        # (the documented window: until the next refresh)
        assert say().headers["x-voxgate-cache"] == "hit"
        assert listed_hash() == hashlib.sha256(second_clip).hexdigest()  # a refresh: the new hash is seen
        b = say()
        assert b.headers["x-voxgate-cache"] == "miss"  # a new key: spoken again with the new clip
        assert b.content != a.content
        assert say().content == b.content
        conn = sqlite3.connect(tmp_path / "data" / "voxgate.sqlite3")
        try:
            rows = conn.execute("SELECT voice FROM tts_cache WHERE model = 'turbo'").fetchall()
        finally:
            conn.close()
        assert sorted(r[0] for r in rows) == ["clip", "default"]  # the old clip's answer was purged
        assert m.metric("voxgate_manager_cold_starts_total", model="turbo") == 1
    finally:
        m.stop()
