"""The speech WebSocket through the manager: the socket starts the model, is relayed both ways,
holds the model while open, and lets go when it closes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from audio_check import decode
from ws_client import collect
from manager_harness import ManagerProcess, piper_process_model


@pytest.fixture
def manager(tmp_path):
    m = ManagerProcess(tmp_path, [piper_process_model()], env={"VOXGATE_API_KEYS": "k1"})
    yield m
    m.stop()


def url(m, query="model=piper-alias&api_key=k1"):
    return m.url.replace("http://", "ws://") + "/v1/audio/speech/ws?" + query


def test_socket_starts_the_model_relays_and_releases_it(manager):
    m = manager
    assert m.status("piper")["state"] == "stopped"

    async def main():
        async with connect(url(m)) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 120))["type"] == "pong"
            assert m.status("piper")["state"] == "ready" and m.status("piper")["requests_in_flight"] == 1
            # the manager's alias is rewritten to the server's model id
            await ws.send(json.dumps({"action": "generate", "model": "piper-alias", "voice": "alloy",
                                      "input": "Through the manager.", "response_format": "wav"}))
            audio, messages = await collect(ws)
            assert [x["type"] for x in messages] == ["metrics", "done"], messages
            assert decode(audio, "wav").duration > 0.5
            await ws.send(json.dumps({"action": "generate", "model": "nope", "voice": "alloy", "input": "Hi."}))
            error = json.loads(await ws.recv())
            assert error["type"] == "error" and error["error"]["code"] == "model_mismatch"
            await ws.send("not json")  # the server's own answer comes back through the relay
            assert json.loads(await ws.recv())["error"]["code"] == "invalid_json"
            await ws.send(json.dumps({"action": "append", "voice": "alloy", "text": "One sentence. "}))
            await ws.send(json.dumps({"action": "flush"}))
            audio, messages = await collect(ws)
            assert messages[-1]["type"] == "done" and len(audio) > 0

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while m.status("piper")["requests_in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m.status("piper")["requests_in_flight"] == 0


def test_keys_and_unknown_models(manager):
    async def main():
        with pytest.raises(InvalidStatus):
            async with connect(url(manager, "model=piper")):
                pass
        async with connect(url(manager, "model=nope&api_key=k1")) as ws:
            error = json.loads(await ws.recv())
            assert error["error"]["code"] == "model_not_found" and error["error"]["param"] == "model"

    asyncio.run(main())
    assert manager.status("piper")["state"] == "stopped"  # neither opened the model


def test_a_users_own_api_key_opens_the_socket_as_it_opens_the_http_routes(manager):
    import httpx

    with httpx.Client(base_url=manager.url, timeout=30) as c:
        r = c.post("/api/auth/register", json={"username": "kim", "password": "correct horse battery"})
        assert r.status_code == 201, r.text
        made = c.post("/api/keys", headers={"Authorization": f"Bearer {r.json()['access_token']}"},
                      json={"name": "satellite"})
        assert made.status_code == 201, made.text
        key, key_id, token = made.json()["key"], made.json()["id"], r.json()["access_token"]

    async def opens(api_key: str) -> bool:
        try:
            async with connect(url(manager, f"model=nope&api_key={api_key}")) as ws:
                return json.loads(await ws.recv())["error"]["code"] == "model_not_found"
        except InvalidStatus:
            return False

    assert asyncio.run(opens(key))
    assert not asyncio.run(opens(key[:-1] + ("x" if key[-1] != "x" else "y")))
    with httpx.Client(base_url=manager.url, timeout=30) as c:  # revoked: refused at once
        assert c.delete(f"/api/keys/{key_id}", headers={"Authorization": f"Bearer {token}"}).status_code in (200, 204)
    assert not asyncio.run(opens(key))
