"""The manager's catalog tells the truth: every id and alias in /v1/models with the capabilities the
server reported, /v1/models/tts-1 for the alias, and /health saying whether anything can be served
and how. None of it starts a model."""

from __future__ import annotations

import time

import httpx
from manager_harness import ManagerProcess, piper_process_model, speech


def test_models_list_ids_and_aliases_with_reported_capabilities(tmp_path) -> None:
    gpu = {"id": "gpu", "aliases": ["tts-1-hd"], "upstream_model": "chatterbox-turbo",
           "runtime": {"type": "docker", "image": "voxgate/does-not-exist:1", "port": 1, "container_name": f"voxgate-nope-{tmp_path.name}"}}
    m = ManagerProcess(tmp_path, [piper_process_model("piper", aliases=["tts-1"]), gpu],
                       env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    try:
        data = httpx.get(f"{m.url}/v1/models").json()["data"]
        by_id = {d["id"]: d for d in data}
        assert {"piper", "tts-1", "gpu", "tts-1-hd"} <= set(by_id)
        assert by_id["tts-1"]["alias_of"] == "piper" and by_id["tts-1"]["root"] == "piper"
        assert by_id["piper"]["capabilities"] is None  # never ran: nothing claimed
        h = httpx.get(f"{m.url}/health").json()
        assert h["can_serve"] and h["startable"] == ["piper"] and h["ready"] == []
        assert h["serving"]["gpu"]["serving"] == "unavailable" and h["serving"]["gpu"]["reason"]
        assert m.metric("voxgate_manager_cold_starts_total") == 0

        assert speech(m.url, "tts-1", text="Hi.").status_code == 200
        deadline = time.monotonic() + 10
        while (caps := httpx.get(f"{m.url}/v1/models/tts-1").json()["capabilities"]) is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        one = httpx.get(f"{m.url}/v1/models/tts-1").json()
        assert one["id"] == "tts-1" and one["alias_of"] == "piper" and one["state"] == "ready"
        assert "pcm" in caps["formats"] and caps["streaming"] is True and "joe" in one["voices"]
        h = httpx.get(f"{m.url}/health").json()
        assert h["ready"] == ["piper"] and h["models"]["piper"] == "ready"
        missing = httpx.get(f"{m.url}/v1/models/whisper-1")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    finally:
        m.stop()
