"""GET /v1/audio/speech/ws with the real ``websockets`` client against a real server
(Piper for speed, Kokoro where a generation must still be running when the client acts)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from audio_check import decode
from ws_client import collect

LONG = ("The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
        "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
        "Rice is often served in round bowls. The juice of lemons makes fine punch.")


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory, server_factory):
    cache = tmp_path_factory.mktemp("kokoro-cache")
    proc = server_factory({"VOXGATE_ENGINES": "piper,kokoro", "KOKORO_JA_CACHE": str(cache),
                           "VOXGATE_CONCURRENCY": "2", "VOXGATE_QUEUE_SIZE": "16"})
    wait_all_ready(proc)
    yield proc
    proc.stop()


def wait_all_ready(server, timeout=180):
    """/health is 200 once one engine is ready; these tests need every engine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engines = httpx.get(f"{server.url}/health").json()["engines"]
        if all(e["state"] == "ready" for e in engines.values()):
            return
        time.sleep(0.2)
    raise RuntimeError(f"engines not ready: {engines}")


def ws_url(server, path="/v1/audio/speech/ws"):
    return server.url.replace("http://", "ws://") + path


def engine_active(server, engine):
    return httpx.get(f"{server.url}/health").json()["engines"][engine]["active"]


async def test_ping_gets_pong(ws_server):
    async with connect(ws_url(ws_server)) as ws:
        await ws.send(json.dumps({"action": "ping", "id": 7}))
        assert json.loads(await ws.recv()) == {"type": "pong", "id": 7}


async def test_several_generations_on_one_socket_in_their_formats(ws_server):
    async with connect(ws_url(ws_server)) as ws:
        for fmt in ("wav", "mp3", "pcm"):
            await ws.send(json.dumps({"action": "generate", "model": "piper", "voice": "alloy",
                                      "input": "Hello from the socket.", "response_format": fmt}))
            audio, messages = await collect(ws)
            assert [m["type"] for m in messages] == ["metrics", "done"], messages
            metrics, done = messages
            assert done["stopped"] is False and done["generation_id"] == metrics["generation_id"]
            assert metrics["audio_seconds"] > 0.5 and metrics["time_to_first_audio_s"] is not None
            decoded = decode(audio, fmt)
            assert abs(decoded.duration - metrics["audio_seconds"]) < 0.15, (fmt, decoded.duration, metrics)


async def test_bad_messages_get_an_error_and_the_socket_stays_usable(ws_server):
    async with connect(ws_url(ws_server)) as ws:
        cases = [
            ("not json", "invalid_json", None),
            (json.dumps([1, 2]), "invalid_message", None),
            (b"\x00\x01", "invalid_message", None),
            (json.dumps({"action": "dance"}), "invalid_action", "action"),
            (json.dumps({"action": "generate", "model": "piper", "voice": "alloy"}), "missing_required_parameter", "input"),
            (json.dumps({"action": "generate", "model": "piper", "voice": "alloy", "input": " "}), "invalid_value", "input"),
            (json.dumps({"action": "generate", "model": "nope", "voice": "alloy", "input": "Hi."}), "model_not_found", "model"),
            (json.dumps({"action": "generate", "model": "piper", "voice": "nobody", "input": "Hi."}), "invalid_voice", "voice"),
            (json.dumps({"action": "generate", "model": "piper", "voice": "alloy", "input": "Hi.", "speed": 9}), "invalid_value", "speed"),
            (json.dumps({"action": "generate", "model": "kokoro", "voice": "jm_kumo(0)+jf_alpha", "input": "Hi."}), "invalid_voice", "voice"),
            (json.dumps({"action": "append"}), "invalid_value", "text"),
            (json.dumps({"action": "flush"}), "invalid_action", "action"),
        ]
        for raw, code, param in cases:
            await ws.send(raw)
            error = json.loads(await ws.recv())
            assert error["type"] == "error" and error["error"]["code"] == code, (raw, error)
            assert error["error"]["param"] == param and error["error"]["message"]
            assert error["status"] in (400, 404)
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
        await ws.send(json.dumps({"action": "generate", "model": "piper", "voice": "alloy", "input": "Still here."}))
        audio, messages = await collect(ws)
        assert messages[-1]["type"] == "done" and decode(audio, "mp3").duration > 0.3


async def test_generate_while_busy_is_refused_and_stop_ends_it_within_a_second(ws_server):
    async with connect(ws_url(ws_server)) as ws:
        await ws.send(json.dumps({"action": "generate", "model": "kokoro", "voice": "jm_kumo",
                                  "input": LONG, "response_format": "pcm"}))
        first = await asyncio.wait_for(ws.recv(), 120)
        assert isinstance(first, bytes)  # audio is flowing, most of the text is still to come
        await ws.send(json.dumps({"action": "generate", "model": "piper", "voice": "alloy", "input": "Hi."}))
        await ws.send(json.dumps({"action": "ping"}))
        seen = []
        while len(seen) < 2:
            msg = await asyncio.wait_for(ws.recv(), 60)
            if isinstance(msg, str):
                seen.append(json.loads(msg))
        assert seen[0]["type"] == "error" and seen[0]["error"]["code"] == "generation_in_progress"
        assert seen[1]["type"] == "pong"  # answered while the engine works
        assert engine_active(ws_server, "kokoro") == 1
        sent = time.perf_counter()
        await ws.send(json.dumps({"action": "stop"}))
        _, messages = await collect(ws)
        waited = time.perf_counter() - sent
        assert messages[-1] == {**messages[-1], "type": "done", "stopped": True}
        assert waited < 1.0, waited
        assert engine_active(ws_server, "kokoro") == 0  # the engine let go before "done"
        assert messages[0]["type"] == "metrics" and messages[0]["audio_seconds"] < 20


async def test_a_vanished_client_frees_its_slot(ws_server):
    ws = await connect(ws_url(ws_server))
    await ws.send(json.dumps({"action": "generate", "model": "kokoro", "voice": "jm_kumo",
                              "input": LONG, "response_format": "pcm"}))
    assert isinstance(await asyncio.wait_for(ws.recv(), 120), bytes)
    assert engine_active(ws_server, "kokoro") == 1
    ws.transport.abort()  # no close frame: the client just disappears
    deadline = time.monotonic() + 5
    while engine_active(ws_server, "kokoro") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert engine_active(ws_server, "kokoro") == 0


async def test_appended_text_is_spoken_sentence_by_sentence(ws_server):
    async with connect(ws_url(ws_server)) as ws:
        await ws.send(json.dumps({"action": "append", "model": "piper", "voice": "alloy", "response_format": "wav",
                                  "text": "Hello there, this is the first"}))
        await ws.send(json.dumps({"action": "append", "text": " sentence. And this is"}))
        # the first sentence is complete: its audio comes before anything is flushed
        first = await asyncio.wait_for(ws.recv(), 60)
        assert isinstance(first, bytes)
        await ws.send(json.dumps({"action": "append", "text": " the second one! A third"}))
        await ws.send(json.dumps({"action": "append", "text": " without an end"}))
        await ws.send(json.dumps({"action": "flush"}))
        audio, messages = await collect(ws)
        assert [m["type"] for m in messages] == ["metrics", "done"], messages
        assert messages[0]["sentences"] == 3 and messages[1]["stopped"] is False
        decoded = decode(first + audio, "wav")  # one continuous WAV stream across the sentences
        assert abs(decoded.duration - messages[0]["audio_seconds"]) < 0.15
        assert decoded.duration > 3.0
        # the socket takes a fresh incremental stream afterwards
        await ws.send(json.dumps({"action": "append", "text": "Once more. "}))
        await ws.send(json.dumps({"action": "flush"}))
        audio, messages = await collect(ws)
        assert messages[0]["sentences"] == 1 and decode(audio, "wav").duration > 0.4


async def test_ten_sockets_at_once(ws_server):
    async def one(i):
        async with connect(ws_url(ws_server)) as ws:
            await ws.send(json.dumps({"action": "generate", "model": "piper", "voice": "alloy",
                                      "input": f"This is socket number {i}.", "response_format": "flac"}))
            return await collect(ws)

    results = await asyncio.gather(*(one(i) for i in range(10)))
    for audio, messages in results:
        assert messages[-1]["type"] == "done" and not messages[-1]["stopped"]
        assert decode(audio, "flac").duration > 0.8


def test_api_keys_apply_to_the_socket(server_factory):
    server = server_factory({"VOXGATE_API_KEYS": "sekrit"})
    try:
        _check_keys(server)
    finally:
        server.stop()


def _check_keys(server):
    async def main():
        with pytest.raises(InvalidStatus):
            async with connect(ws_url(server)):
                pass
        async with connect(ws_url(server), additional_headers={"Authorization": "Bearer sekrit"}) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"
        async with connect(ws_url(server) + "?api_key=sekrit") as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"

    asyncio.run(main())
