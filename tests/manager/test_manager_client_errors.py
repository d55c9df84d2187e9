"""Client mistakes sent to the real manager (process runtime, real Piper server): every one is a 4xx in
OpenAI's envelope, never a 500, a 503 for a voice that cannot exist, a 307, or a broken upstream
request line (issue 17)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from audio_check import decode
from manager_harness import ManagerProcess, piper_process_model

GOOD = {"model": "piper", "input": "Hello there.", "voice": "alloy", "response_format": "wav"}


@pytest.fixture(scope="module")
def mgr(tmp_path_factory):
    m = ManagerProcess(tmp_path_factory.mktemp("client-errors"), [piper_process_model()],
                       env={"VOXGATE_MANAGER_HEADER_TIMEOUT_S": "1", "VOXGATE_MANAGER_BODY_TIMEOUT_S": "1"})
    yield m
    m.stop()


def envelope_of(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def post_raw(m: ManagerProcess, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(f"{m.url}/v1/audio/speech", content=body, headers={"content-type": content_type}, timeout=60)


@pytest.mark.parametrize("payload", [{k: v for k, v in GOOD.items() if k != "model"}, {**GOOD, "model": None}, {**GOOD, "model": ""}])
def test_missing_null_or_empty_model_is_400_param_model(mgr, payload):
    r = httpx.post(f"{mgr.url}/v1/audio/speech", json=payload, timeout=30)
    assert r.status_code == 400
    assert envelope_of(r)["param"] == "model"
    assert mgr.status("piper")["state"] == "stopped"  # a mistake never starts a model


def test_deeply_nested_json_is_400(mgr):
    depth = 100_000
    r = post_raw(mgr, b'{"model": "piper", "input": ' + b"[" * depth + b"]" * depth + b"}")
    assert r.status_code == 400 and envelope_of(r)["code"] == "invalid_json"
    r = post_raw(mgr, b'{"model": "piper", "input": "x", "extra": ' + b"[" * 200 + b"]" * 200 + b"}")
    assert r.status_code == 400 and envelope_of(r)["code"] == "invalid_json"


@pytest.mark.parametrize("field", ["input", "voice", "model"])
def test_lone_surrogate_is_400(mgr, field):
    body = ('{"model": "piper", "input": "hi", "voice": "alloy", "%s": "a\\ud800b"}' % field).encode()
    r = post_raw(mgr, body)
    assert r.status_code == 400, r.text
    assert envelope_of(r)["param"] == field


def test_raw_invalid_utf8_is_400(mgr):
    r = post_raw(mgr, b'{"model": "piper", "input": "\xed\xa0\x80 \xff"}')
    assert r.status_code == 400 and envelope_of(r)["code"] == "invalid_json"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded"])
def test_non_json_content_type_is_415(mgr, ctype):
    r = post_raw(mgr, b"model=piper&input=hello", ctype)
    assert r.status_code == 415 and envelope_of(r)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("method, path, allow", [("GET", "/v1/audio/speech", "POST"), ("DELETE", "/v1/models", "GET"),
                                                 ("POST", "/health", "GET")])
def test_405_has_allow_header_and_envelope(mgr, method, path, allow):
    r = httpx.request(method, mgr.url + path, timeout=10)
    assert r.status_code == 405
    assert allow in [a.strip() for a in r.headers["allow"].split(",")]
    envelope_of(r)


def test_control_characters_in_voice_id_are_404_not_503(mgr):
    for vid in ("a%01b", "x%7Fy", "nul%00"):
        r = httpx.get(f"{mgr.url}/v1/audio/voices/{vid}", params={"model": "piper"}, timeout=10)
        assert r.status_code == 404, (vid, r.status_code, r.text)
        assert envelope_of(r)["code"] == "voice_not_found"


def test_trailing_slash_is_served_not_redirected(mgr):
    r = httpx.get(f"{mgr.url}/v1/models/", timeout=10)
    assert r.status_code == 200 and r.json()["object"] == "list"
    r = httpx.post(f"{mgr.url}/v1/audio/speech/", json=GOOD, timeout=120)
    assert r.status_code == 200, r.text
    assert decode(r.content, "wav").duration > 0.3


def test_odd_voice_ids_are_forwarded_quoted(mgr):
    httpx.post(f"{mgr.url}/v1/audio/speech", json=GOOD, timeout=120).raise_for_status()  # the model is up
    for vid in ("caf\u00e9-\u4e2d\u6587", 'quo"te', "sp ace", "\u0394elta"):
        for method in ("GET", "DELETE"):
            r = httpx.request(method, f"{mgr.url}/v1/audio/voices/{vid}", params={"model": "piper"}, timeout=30)
            assert r.status_code == 404, (method, vid, r.status_code, r.text)  # the server's own answer
            envelope_of(r)
    log = mgr.log()
    assert "Traceback" not in log and "Invalid HTTP request" not in log


def _raw(m: ManagerProcess, data: bytes, wait_s: float = 5.0) -> tuple[bytes, float]:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", m.port), timeout=wait_s) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out, time.monotonic() - t0


def test_slow_request_head_is_cut_off(mgr):
    out, took = _raw(mgr, b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Ty")
    assert out.startswith(b"HTTP/1.1 408"), out
    assert b'request_timeout' in out and took < 4.0


def test_slow_request_body_is_cut_off(mgr):
    out, took = _raw(mgr, b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 200\r\n\r\n{\"model\": \"pip")
    assert out.startswith(b"HTTP/1.1 408"), out
    assert b"request_timeout" in out and took < 4.0


@pytest.mark.parametrize("data", [
    b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,  # a TLS hello on the plain port
])
def test_malformed_http_is_a_4xx_envelope(mgr, data):
    out, _ = _raw(mgr, data)
    status = int(out.split(b" ", 2)[1])
    assert 400 <= status < 500, out
    assert b'"error"' in out


def test_still_serves_after_the_battery(mgr):
    r = httpx.post(f"{mgr.url}/v1/audio/speech", json=GOOD, timeout=120)
    assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
