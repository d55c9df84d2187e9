"""The OpenAI speech API, end to end: a real voxgate-server process, the real openai SDK, Piper."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from audio_check import decode

SENTENCE = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."
# Expected codec and decoded sample rate per format (OpenAI's opus is Ogg Opus, decoded at 48 kHz).
FORMATS = {
    "mp3": ({"mp3", "mp3float"}, 24000, "audio/mpeg"),
    "opus": ({"opus", "libopus"}, 48000, "audio/ogg"),
    "aac": ({"aac"}, 24000, "audio/aac"),
    "flac": ({"flac"}, 24000, "audio/flac"),
    "wav": ({"pcm_s16le"}, 24000, "audio/wav"),
    "pcm": ({"pcm_s16le"}, 24000, "audio/pcm"),
}


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_decodes_with_right_codec_rate_and_duration(client, fmt):
    codecs, rate, content_type = FORMATS[fmt]
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format=fmt
    ) as response:
        assert response.headers["content-type"].startswith(content_type)
        data = response.read()
    audio = decode(data, fmt)
    assert audio.codec in codecs
    assert audio.sample_rate == rate
    # 17 words of ordinary speech: roughly 0.2-0.6 s a word.
    assert 3.0 < audio.duration < 10.0, audio.duration
    assert float((audio.samples ** 2).mean()) ** 0.5 > 0.01  # not silence


def test_default_format_is_mp3(client):
    response = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello world.")
    assert response.response.headers["content-type"] == "audio/mpeg"
    assert decode(response.content, "mp3").codec in {"mp3", "mp3float"}


def test_streaming_response_arrives_in_several_chunks(client):
    text = " ".join(f"This is sentence number {i} of a longer passage." for i in range(8))
    with client.audio.speech.with_streaming_response.create(
        model="piper", voice="alloy", input=text, response_format="pcm"
    ) as response:
        chunks = [c for c in response.iter_bytes(chunk_size=None) if c]
    assert len(chunks) >= 4
    assert decode(b"".join(chunks), "pcm").duration > 10


async def test_async_client(server):
    aclient = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
    async with aclient.audio.speech.with_streaming_response.create(
        model="tts-1-hd", voice={"id": "joe"}, input=SENTENCE, response_format="flac"
    ) as response:
        data = b"".join([c async for c in response.iter_bytes()])
    assert decode(data, "flac").duration > 3.0
    await aclient.close()


def test_sse_events_match_openai(client):
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="nova", input=SENTENCE, response_format="pcm", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in response.iter_lines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and events[-1]["type"] == "speech.audio.done"
    assert all(e["type"] == "speech.audio.delta" for e in events[:-1])
    usage = events[-1]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert decode(pcm, "pcm").duration > 3.0


def test_sse_is_chosen_by_stream_format_not_accept(server):
    body = {"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": "pcm"}
    r = httpx.post(f"{server.url}/v1/audio/speech", json=body, headers={"Accept": "text/event-stream"}, timeout=60)
    assert r.headers["content-type"] == "audio/pcm"
    r = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "stream_format": "sse"},
                   headers={"Accept": "application/octet-stream"}, timeout=60)
    assert r.headers["content-type"].startswith("text/event-stream")


def test_speed_two_halves_duration(client):
    text = "Speed changes how long this sentence takes to say, but not what it says."
    durations = {}
    for speed in (1.0, 2.0):
        data = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="pcm", speed=speed).content
        durations[speed] = decode(data, "pcm").duration
    ratio = durations[2.0] / durations[1.0]
    assert 0.4 < ratio < 0.62, durations


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_4096_character_input_succeeds(client, fmt):
    base = "Voxgate reads long passages one sentence at a time, and every sentence is spoken. "
    text = (base * 60)[:4096]
    assert len(text) == 4096
    data = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format=fmt).content
    audio = decode(data, fmt)
    words = len(text.split())
    assert words * 0.2 < audio.duration < words * 0.8, audio.duration


def test_models_list_and_capabilities(client, server):
    models = {m.id: m for m in client.models.list().data}
    assert {"piper", "tts-1", "tts-1-hd"} <= set(models)
    raw = httpx.get(f"{server.url}/v1/models/piper").json()
    caps = raw["capabilities"]
    assert set(caps["formats"]) == set(FORMATS)
    assert caps["max_input_chars"] == 4096 and caps["streaming"] is True
    assert caps["voices"] == ["joe"] and caps["instructions"] is False
    assert client.models.retrieve("tts-1").id == "tts-1"


def test_voices_listing_for_open_webui(server):
    voices = httpx.get(f"{server.url}/v1/audio/voices").json()["voices"]
    ids = {v["id"] for v in voices}
    assert {"joe", "alloy", "nova", "cedar"} <= ids
    filtered = httpx.get(f"{server.url}/v1/audio/voices", params={"model": "tts-1"}).json()["voices"]
    assert all(v["model"] == "piper" for v in filtered)


def test_health_and_metrics(server):
    r = httpx.get(f"{server.url}/health")
    assert r.status_code == 200 and r.json()["engines"]["piper"]["state"] == "ready"
    text = httpx.get(f"{server.url}/metrics").text
    for series in ("voxgate_requests_total", "voxgate_synthesis_seconds", "voxgate_audio_seconds_total",
                   "voxgate_queue_depth", "voxgate_time_to_first_audio_seconds", "voxgate_errors_total"):
        assert series in text


def test_instructions_are_accepted_and_reported_ignored(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", timeout=60, json={
        "model": "tts-1", "voice": "alloy", "input": "Hello.", "instructions": "Speak cheerfully."})
    assert r.status_code == 200 and r.headers["x-voxgate-ignored"] == "instructions"
