"""The parked state of a real voxgate-server with Piper: POST /admin/park drops Piper's onnx
session, /admin/wake (or the next request) loads it again; nothing asked meanwhile is lost."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from audio_check import decode


@pytest.fixture(scope="module")
def srv(server_factory):
    return server_factory({"VOXGATE_CONCURRENCY": "4"})


def _speech(url: str, text: str = "Parked and woken.", headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json={"model": "piper", "input": text, "voice": "alloy",
                                                      "response_format": "wav"}, headers=headers, timeout=60)


def _park_info(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()["engines"]["piper"]["park"]


def test_capabilities_say_piper_can_park_and_its_concurrency(srv):
    model = httpx.get(f"{srv.url}/v1/models/piper", timeout=5).json()
    assert model["capabilities"]["park"] == {"supported": True, "mechanism": "reload", "reason": None}
    assert model["capabilities"]["concurrency"] == 4
    assert model["park_state"] == "awake"


def test_park_then_wake_then_speak(srv):
    answer = httpx.post(f"{srv.url}/admin/park", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["engines"]["piper"]["state"] == "parked"
    health = httpx.get(f"{srv.url}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["parked"] == ["piper"]
    assert httpx.get(f"{srv.url}/v1/models/piper", timeout=5).json()["park_state"] == "parked"
    # parking twice is a no-op
    assert httpx.post(f"{srv.url}/admin/park", timeout=30).json()["engines"]["piper"]["park_s"] == 0
    woke = httpx.post(f"{srv.url}/admin/wake", timeout=30)
    assert woke.status_code == 200 and woke.json()["engines"]["piper"]["state"] == "awake"
    assert woke.json()["engines"]["piper"]["wake_s"] > 0
    r = _speech(srv.url)
    assert r.status_code == 200 and decode(r.content, "wav").duration > 0.5


def test_requests_to_a_parked_server_wake_it_once_and_all_are_served(srv):
    before = _park_info(srv.url)
    assert httpx.post(f"{srv.url}/admin/park", timeout=30).status_code == 200
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: _speech(srv.url, f"Request number {i}."), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert all(decode(a.content, "wav").duration > 0.3 for a in answers)
    after = _park_info(srv.url)
    assert after["state"] == "awake"
    assert after["wakes"] == before["wakes"] + 1
    assert after["parks"] == before["parks"] + 1


def test_requests_arriving_while_parking_are_served(srv):
    """Long requests in flight: the park waits for them, requests sent meanwhile are held and
    served after the wake the first of them causes."""
    text = " ".join(f"This is sentence {i} of a long passage to keep the engine busy." for i in range(6))
    before = _park_info(srv.url)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        busy = [pool.submit(_speech, srv.url, text) for _ in range(2)]
        import time

        time.sleep(0.3)
        park = pool.submit(lambda: httpx.post(f"{srv.url}/admin/park", timeout=60))
        time.sleep(0.2)
        late = [pool.submit(_speech, srv.url, f"Late request {i}.") for i in range(3)]
        results = [f.result() for f in busy + late]
        assert park.result().status_code == 200, park.result().text
    assert [r.status_code for r in results] == [200] * 5
    assert all(decode(r.content, "wav").duration > 0.3 for r in results)
    after = _park_info(srv.url)
    assert after["state"] == "awake"
    assert (after["parks"], after["wakes"]) == (before["parks"] + 1, before["wakes"] + 1)


def test_admin_routes_need_the_api_key_when_keys_are_set(server_factory):
    keyed = server_factory({"VOXGATE_API_KEYS": "sekret"})
    assert httpx.post(f"{keyed.url}/admin/park", timeout=10).status_code == 401
    ok = httpx.post(f"{keyed.url}/admin/park", headers={"Authorization": "Bearer sekret"}, timeout=30)
    assert ok.status_code == 200
    assert httpx.post(f"{keyed.url}/admin/wake", headers={"Authorization": "Bearer sekret"},
                      timeout=30).status_code == 200


async def test_every_door_wakes_a_parked_engine(srv):
    """The WebSocket, the RealtimeTTS route and the word-timings route go through the same park
    gate as the plain speech route: a parked engine is woken once and each is served."""
    import base64
    import json

    from websockets.asyncio.client import connect

    async def parked() -> dict:
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.post(f"{srv.url}/admin/park")).status_code == 200
        return _park_info(srv.url)

    before = await parked()
    async with connect(srv.url.replace("http://", "ws://") + "/v1/audio/speech/ws") as ws:
        await ws.send(json.dumps({"action": "generate", "model": "piper", "voice": "alloy",
                                  "input": "Woken by a socket.", "response_format": "wav"}))
        audio, kinds = bytearray(), []
        while "done" not in kinds and "error" not in kinds:
            msg = await ws.recv()
            if isinstance(msg, bytes):
                audio += msg
            else:
                kinds.append(json.loads(msg)["type"])
    assert kinds == ["metrics", "done"], kinds
    assert decode(bytes(audio), "wav").duration > 0.5
    assert _park_info(srv.url)["wakes"] == before["wakes"] + 1

    before = await parked()
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(f"{srv.url}/v1/tts/generate", json={"text": "Woken by RealtimeTTS."})
        assert r.status_code == 200, r.text
        assert decode(r.content, "wav").duration > 0.5
        assert _park_info(srv.url)["wakes"] == before["wakes"] + 1

        before = await parked()
        r = await client.post(f"{srv.url}/v1/audio/speech", json={
            "model": "piper", "voice": "alloy", "input": "Woken with timings.", "response_format": "wav",
            "timestamps": "word"})
        assert r.status_code == 200, r.text
        assert [w["word"] for w in r.json()["words"]][:2] == ["Woken", "with"]
        assert decode(base64.b64decode(r.json()["audio"]), "wav").duration > 0.5
    assert _park_info(srv.url)["wakes"] == before["wakes"] + 1
