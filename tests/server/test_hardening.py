"""Issue 17, server half: no client mistake is a 500, no answer is an empty 200, no trap in HTTP.

Everything runs against a real voxgate-server process with the real Piper engine.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import wave

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


# -- 4. slow and malformed HTTP --------------------------------------------------------------------

BOUND_S = 4.0  # the server is started with 1 s limits; this is the most we wait for the cut


@pytest.fixture(scope="module")
def strict_server(server_factory):
    return server_factory({"VOXGATE_HEADER_TIMEOUT_S": "1", "VOXGATE_BODY_TIMEOUT_S": "1"})


def _connect(srv) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=BOUND_S + 2)
    return sock


def _read_until_closed(sock: socket.socket, trickle: bytes = b"") -> tuple[bytes, float]:
    """Send ``trickle`` a byte every 0.2 s while reading; return what came back and when it closed."""
    started = time.monotonic()
    sock.settimeout(0.2)
    data = b""
    sent = 0
    while time.monotonic() - started < BOUND_S + 2:
        try:
            part = sock.recv(65536)
        except TimeoutError:
            if sent < len(trickle):
                try:
                    sock.sendall(trickle[sent:sent + 1])
                except OSError:
                    break
                sent += 1
            continue
        except ConnectionResetError:
            break
        if not part:
            break
        data += part
    return data, time.monotonic() - started


def _status_and_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_half_sent_headers_are_cut_with_408(strict_server):
    with _connect(strict_server) as sock:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n")
        raw, elapsed = _read_until_closed(sock, trickle=b"X-Slow: " + b"a" * 200)
    assert elapsed < BOUND_S, elapsed
    status, body = _status_and_json(raw)
    assert status == 408 and body["error"]["code"] == "header_timeout"


def test_idle_connection_is_closed(strict_server):
    with _connect(strict_server) as sock:
        raw, elapsed = _read_until_closed(sock)
    assert elapsed < BOUND_S and raw == b""


def test_half_sent_body_is_cut_with_408(strict_server):
    with _connect(strict_server) as sock:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n{\"model\": ")
        raw, elapsed = _read_until_closed(sock, trickle=b" " * 400)
    assert elapsed < BOUND_S, elapsed
    status, body = _status_and_json(raw)
    assert status == 408 and body["error"]["code"] == "body_timeout"


def test_keep_alive_connection_gets_a_fresh_header_deadline(strict_server):
    with _connect(strict_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        raw, elapsed = _read_until_closed(sock, trickle=b"Host: " + b"x" * 100)
    assert elapsed < BOUND_S and raw.startswith(b"HTTP/1.1 408")


def test_oversized_headers_are_431(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(40):
                sock.sendall(b"X-Filler: " + b"f" * 4000 + b"\r\n")
        except OSError:
            pass  # the server may close before all of it is sent
        raw, _ = _read_until_closed(sock)
    status, body = _status_and_json(raw)
    assert status == 431 and body["error"]["code"] == "headers_too_large"


def test_large_body_sent_with_the_headers_is_not_counted_as_headers(server):
    body = b"\x01" * 300_000  # one send: the first read holds headers and much more than the limit
    head = (b"POST /v1/audio/voices HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
    with _connect(server) as sock:
        sock.sendall(head + body)
        raw, _ = _read_until_closed(sock)
    status, err = _status_and_json(raw)
    assert status == 400 and err["error"]["code"] == "invalid_multipart"


def test_a_normal_request_is_not_affected(strict_server):
    r = httpx.post(f"{strict_server.url}/v1/audio/speech", timeout=60,
                   json={"model": "tts-1", "voice": "alloy", "input": "Hello there, this takes a moment.",
                         "response_format": "wav"})
    assert r.status_code == 200 and decode(r.content, "wav").duration > 1


@pytest.mark.parametrize("request_bytes", [
    b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/json\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
])
def test_malformed_http_is_a_400_envelope(server, request_bytes):
    with _connect(server) as sock:
        sock.sendall(request_bytes)
        raw, _ = _read_until_closed(sock)
    status, body = _status_and_json(raw)
    assert status == 400 and body["error"]["code"] == "invalid_http"


def test_bare_lf_line_endings_are_4xx_or_served(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\nHost: x\nConnection: close\n\n")
        raw, _ = _read_until_closed(sock)
    status = int(raw.split()[1])
    assert status in (200, 400), raw[:200]
    if status == 400:
        assert json.loads(raw.partition(b"\r\n\r\n")[2])["error"]["code"] == "invalid_http"


# -- 6. WAV sizes ----------------------------------------------------------------------------------


def test_one_sentence_wav_has_true_riff_sizes(server):
    r = _post(server, {"model": "tts-1", "voice": "alloy", "input": "The header says how long this is.",
                       "response_format": "wav"})
    assert r.status_code == 200
    with wave.open(io.BytesIO(r.content)) as w:
        frames, rate = w.getnframes(), w.getframerate()
    assert rate == 24000
    assert frames == (len(r.content) - 44) // 2
    assert frames / rate == pytest.approx(decode(r.content, "wav").duration, abs=1e-3)
    assert 1.0 < frames / rate < 5.0


def test_silence_wav_has_true_riff_sizes(server):
    r = _post(server, {"model": "tts-1", "voice": "alloy", "input": "...", "response_format": "wav"})
    with wave.open(io.BytesIO(r.content)) as w:
        assert w.getnframes() / w.getframerate() == pytest.approx(0.25, abs=0.01)


def test_longer_wav_still_streams_with_open_ended_header(server):
    text = " ".join(f"This is sentence number {i} of a longer passage." for i in range(6))
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", timeout=120,
                      json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"}) as r:
        parts = [p for p in r.iter_raw() if p]
    data = b"".join(parts)
    assert len(parts) >= 3
    assert data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"
    assert decode(data, "wav").duration > 8
