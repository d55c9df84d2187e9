"""from_pretrained: the server with no checkpoint folder loads from an offline Hugging Face cache.

This server also runs T3 in bfloat16 and without the watermark (the settings' other values).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from turbo_helpers import ServerProcess, decode


def test_server_loads_from_offline_hf_cache(turbo_ckpt: dict[str, Path], tmp_path: Path) -> None:
    env = {
        "VOXGATE_ENGINES": "chatterbox-turbo",
        "VOXGATE_VOICES_DIR": str(tmp_path / "voices"),
        "VOXGATE_CHATTERBOX_CHUNK_MAX_DURATION_S": "0.12",
        "VOXGATE_CHATTERBOX_WATERMARK": "false",
        "VOXGATE_CHATTERBOX_DTYPE": "bfloat16",
        "VOXGATE_CHATTERBOX_WARMUP": "false",
        "VOXGATE_LOG_LEVEL": "info",
        "HF_HOME": str(turbo_ckpt["hf_home"]),
        "HF_HUB_OFFLINE": "1",
    }
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        server.wait_ready()
        r = httpx.post(f"{server.url}/v1/audio/speech", timeout=300, json={
            "model": "chatterbox-turbo", "input": "Loaded from the cache.", "voice": "default",
            "response_format": "wav", "seed": 5})
        assert r.status_code == 200, r.text
        samples, sr = decode(r.content)
        assert sr == 24000 and samples.size == (3 + 3) * 960
        assert "T3 bfloat16, watermark off" in server.log()
    finally:
        server.stop()


def test_missing_cache_fails_clearly(tmp_path: Path) -> None:
    env = {
        "VOXGATE_ENGINES": "chatterbox-turbo",
        "VOXGATE_VOICES_DIR": str(tmp_path / "voices"),
        "HF_HOME": str(tmp_path / "empty_hf_home"),
        "HF_HUB_OFFLINE": "1",
    }
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        with pytest.raises(RuntimeError, match="could not fetch ResembleAI/chatterbox-turbo"):
            server.wait_ready(timeout=120)
        health = httpx.get(f"{server.url}/health")
        assert health.status_code == 503 and health.json()["status"] == "failed"
    finally:
        server.stop()
