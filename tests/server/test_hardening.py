"""Issue 17, server half: no client mistake is a 500, no answer is an empty 200, no trap in HTTP.

Everything runs against a real voxgate-server process with the real Piper engine.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from audio_check import decode

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def _post(server, body: bytes | dict, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}/v1/audio/speech", content=content, timeout=60,
                      headers={"content-type": "application/json", **headers})


def _assert_envelope(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


# -- 1. client mistakes are 400s, not 500s ---------------------------------------------------------


@pytest.mark.parametrize("depth", [40, 5000, 30000])
def test_deeply_nested_json_is_invalid_json(server, depth):
    for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        body = ('{"model": "tts-1", "voice": "alloy", "input": "hi", "x": ' + nested + "}").encode()
        if len(body) > 65536:
            body = nested.encode()[:65000]  # keep under the body limit: a truncated deep prefix
        _assert_envelope(_post(server, body), 400, "invalid_json")


@pytest.mark.parametrize("field", ["input", "voice", "model"])
def test_escaped_lone_surrogate_is_400(server, field):
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello there."}
    raw = json.dumps(body).replace(f'"{body[field]}"', '"a\\ud800b"').encode()
    err = _assert_envelope(_post(server, raw), 400, "invalid_unicode")
    assert err["param"] == field


@pytest.mark.parametrize("field", ["input", "voice"])
def test_raw_invalid_utf8_is_400(server, field):
    raw = {"input": b'{"model": "tts-1", "voice": "alloy", "input": "a\xed\xa0\x80b \xff"}',
           "voice": b'{"model": "tts-1", "voice": "al\xed\xa0\x80loy", "input": "Hello."}'}[field]
    r = _post(server, raw)
    assert r.status_code == 400 and r.json()["error"]["code"] in {"invalid_unicode", "invalid_json"}


def test_voice_object_with_surrogate_is_400(server):
    raw = b'{"model": "tts-1", "voice": {"id": "\\udfff"}, "input": "Hello."}'
    assert _assert_envelope(_post(server, raw), 400, "invalid_unicode")["param"] == "voice.id"


def test_nul_and_controls_in_input_are_spoken_as_whitespace(server):
    r = _post(server, {"model": "tts-1", "voice": "alloy", "input": "Hello\x00 there\x07 friend.",
                       "response_format": "wav"})
    assert r.status_code == 200, r.text[:300]
    audio = decode(r.content, "wav")
    assert audio.duration > 0.5 and float((audio.samples ** 2).mean()) ** 0.5 > 0.01


def test_unknown_voice_echo_is_encodable(server):
    r = _post(server, {"model": "tts-1", "voice": "n\x00pe\u2603", "input": "Hello."})
    err = _assert_envelope(r, 400, "invalid_voice")
    assert "\u2603" in err["message"]


# -- 2. nothing to speak: a short valid silence, never an empty body --------------------------------

NOTHING = [".", "...", "\u2014", "\u200b", "\ufffd", "\u200b\ufeff\u2060", "\x00", " \x00 \x01 "]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("text", NOTHING)
def test_nothing_to_speak_is_a_valid_silent_file(server, fmt, text):
    r = _post(server, {"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt})
    assert r.status_code == 200, r.text[:300]
    assert r.content, "empty 200"
    audio = decode(r.content, fmt)
    assert 0.1 <= audio.duration <= 1.0, audio.duration
    assert float(abs(audio.samples).max(initial=0)) < 0.01


def test_nothing_to_speak_over_sse(server):
    r = _post(server, {"model": "tts-1", "voice": "alloy", "input": "\u2014", "response_format": "mp3",
                       "stream_format": "sse"})
    assert r.status_code == 200
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert 0.1 <= decode(audio, "mp3").duration <= 1.0


def test_empty_and_whitespace_input_stay_400(server):
    for text in ("", "   "):
        _assert_envelope(_post(server, {"model": "tts-1", "voice": "alloy", "input": text}), 400, "invalid_value")


# -- 3. routes: trailing slash, Allow, content type ------------------------------------------------


def test_trailing_slash_is_served_like_without(server):
    r = httpx.post(f"{server.url}/v1/audio/speech/", json={"model": "tts-1", "voice": "alloy", "input": "Hi.",
                                                           "response_format": "wav"}, timeout=60)
    assert r.status_code == 200 and decode(r.content, "wav").duration > 0.2
    for path in ("/v1/models", "/v1/audio/voices", "/health"):
        plain, slashed = httpx.get(f"{server.url}{path}"), httpx.get(f"{server.url}{path}/")
        assert slashed.status_code == plain.status_code == 200, path
        assert slashed.json().keys() == plain.json().keys()
    assert httpx.get(f"{server.url}/v1/models/tts-1/").json()["id"] == "tts-1"


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/v1/audio/voices", "GET, POST"),
    ("PUT", "/v1/audio/voices/", "GET, POST"),
    ("GET", "/v1/audio/speech", "POST"),
    ("POST", "/v1/models", "GET"),
    ("POST", "/v1/audio/voices/someone", "GET, DELETE"),
])
def test_405_carries_the_complete_allow_header(server, method, path, allow):
    r = httpx.request(method, f"{server.url}{path}")
    _assert_envelope(r, 405)
    assert r.headers["allow"] == allow


def test_text_plain_body_is_415(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", content=b"Hello there.", headers={"content-type": "text/plain"})
    _assert_envelope(r, 415, "unsupported_media_type")
    r = httpx.post(f"{server.url}/v1/audio/speech", content=b'{"model": "tts-1"}', headers={"content-type": "text/plain"})
    _assert_envelope(r, 415, "unsupported_media_type")
