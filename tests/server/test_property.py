"""Property test (issue 17): arbitrary JSON values, strings, unicode and bytes at
``POST /v1/audio/speech`` and the voice routes of a real voxgate-server with the real Piper engine.

Whatever is sent: never a 5xx, never a hang past ``TIMEOUT_S``, every error in OpenAI's envelope,
every 200 a decodable file of the requested format. After the battery the server still serves,
and nothing was written outside its voices folder (which holds only complete voices).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import urllib.parse
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio_check import decode

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 30.0
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
PROPERTY = settings(max_examples=70, deadline=None, database=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])

# Unicode of every category, lone surrogates (Cs) and controls included.
any_text = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)
FIELDS = ("model", "input", "voice", "response_format", "speed", "stream_format", "instructions",
          "temperature", "top_p", "top_k", "repetition_penalty", "seed", "max_duration_s")
field_values = {
    "model": st.sampled_from(["tts-1", "tts-1-hd", "piper", "gpt-4o-mini-tts", "", "nope"]) | any_text,
    "voice": st.sampled_from(["alloy", "joe", "nova", "", "Alloy"]) | any_text
    | st.fixed_dictionaries({"id": st.sampled_from(["alloy", "joe"]) | any_text}),
    "input": st.sampled_from(["Hello there.", ".", "\u2014", "\u200b", "\x00", "Two. Sentences here."])
    | any_text,
    "response_format": st.sampled_from(FORMATS) | any_text,
    "speed": st.sampled_from([0.25, 1.0, 2.5, 4.0]) | st.floats(allow_nan=True, allow_infinity=True),
    "stream_format": st.sampled_from(["audio", "sse"]) | any_text,
}


@st.composite
def speech_bodies(draw) -> tuple[bytes, str]:
    """(raw body, content type): mostly a valid request with a few fields replaced or dropped."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "any_json", "deep", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300)), draw(st.sampled_from(["application/json", "text/plain", ""]))
    if kind == "deep":
        depth = draw(st.integers(1, 20000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        tail = "1" if opener.startswith("{") else ""
        nested = opener * depth + tail + closer * depth
        body = '{"model": "tts-1", "voice": "alloy", "input": "hi", "x": ' + nested + "}"
        return body.encode()[:60000], "application/json"
    if kind == "any_json":
        value = draw(json_values)
    else:
        value = {"model": "tts-1", "voice": "alloy", "input": "Hi.",
                 "response_format": draw(st.sampled_from(FORMATS))}
        for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
            if draw(st.booleans()) and name in value:
                del value[name]
            else:
                value[name] = draw(field_values.get(name, json_values))
        if draw(st.integers(0, 4)) == 0:
            value[draw(any_text)] = draw(json_values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True)
    return text.encode("utf-8", "surrogatepass"), "application/json"


# Statuses seen by the speech property, so the last test can tell a battery that only ever got
# 400s (and so proved little about the 200 path) from one that exercised both.
SEEN: dict[str, list[int]] = {"speech": [], "voices": []}


def _assert_envelope(r: httpx.Response) -> None:
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]


def _check_speech_answer(r: httpx.Response, raw: bytes) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500], raw[:300])
    if r.status_code >= 400:
        _assert_envelope(r)
        return
    assert r.status_code == 200
    body = json.loads(raw)
    fmt = body.get("response_format", "mp3")
    data = r.content
    if body.get("stream_format") == "sse":
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
        assert events and events[-1]["type"] == "speech.audio.done", events[-1:]
        data = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert data, "empty 200"
    assert decode(data, fmt).duration > 0.05


@pytest.fixture(scope="module")
def battery_server(server_factory, tmp_path_factory):
    root = tmp_path_factory.mktemp("property")
    voices = root / "voices"
    srv = server_factory({"VOXGATE_VOICES_DIR": str(voices), "VOXGATE_QUEUE_SIZE": "64"})
    srv.root, srv.voices = root, voices
    srv.git_status_before = _git_status()
    return srv


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60).stdout


@PROPERTY
@given(case=speech_bodies())
def test_speech_never_5xx(battery_server, case):
    raw, content_type = case
    headers = {"content-type": content_type} if content_type else {}
    r = httpx.post(f"{battery_server.url}/v1/audio/speech", content=raw, headers=headers, timeout=TIMEOUT_S)
    SEEN["speech"].append(r.status_code)
    _check_speech_answer(r, raw)


def _wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        t = np.arange(int(16000 * seconds)) / 16000
        w.writeframes((np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes())
    return out.getvalue()


CLIPS = [_wav(6.0), _wav(1.0), b"", b"RIFF\xff\xff\xff\xffWAVEfmt "]


def _multipart(fields: list[tuple[bytes, bytes]], file: tuple[bytes, bytes] | None) -> tuple[bytes, str]:
    boundary = b"voxgate-property-boundary"
    out = b""
    for name, value in fields:
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n"
    if file is not None:
        filename, content = file
        out += (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename
                + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + content + b"\r\n")
    out += b"--" + boundary + b"--\r\n"
    return out, "multipart/form-data; boundary=" + boundary.decode()


def _bytes_of(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


voice_calls = st.one_of(
    st.tuples(st.just("upload"),
              st.lists(st.tuples(st.sampled_from(["name", "language", "description", "other"]), any_text), max_size=4),
              st.one_of(st.none(), st.tuples(any_text, st.sampled_from(range(len(CLIPS))) | st.binary(max_size=200)))),
    st.tuples(st.sampled_from(["get", "download", "delete"]), any_text, st.none()),
    st.tuples(st.just("list"), st.one_of(st.none(), any_text), st.none()),
)


@PROPERTY
@given(call=voice_calls)
def test_voice_routes_never_5xx(battery_server, call):
    url = battery_server.url
    action, arg, extra = call
    if action == "upload":
        fields = [(_bytes_of(k), _bytes_of(v)) for k, v in arg]
        file = None
        if extra is not None:
            filename, content = extra
            file = (_bytes_of(filename).replace(b'"', b"").replace(b"\r", b"").replace(b"\n", b""),
                    CLIPS[content] if isinstance(content, int) else content)
        body, ctype = _multipart(fields, file)
        r = httpx.post(f"{url}/v1/audio/voices", content=body, headers={"content-type": ctype}, timeout=TIMEOUT_S)
    elif action == "list":
        params = "" if arg is None else "?model=" + urllib.parse.quote(_bytes_of(arg), safe="")
        r = httpx.get(f"{url}/v1/audio/voices{params}", timeout=TIMEOUT_S)
    else:
        path = urllib.parse.quote(_bytes_of(arg), safe="") or "%20"
        method = "DELETE" if action == "delete" else "GET"
        query = "?download=1" if action == "download" else ""
        r = httpx.request(method, f"{url}/v1/audio/voices/{path}{query}", timeout=TIMEOUT_S)
    SEEN["voices"].append(r.status_code)
    assert r.status_code < 500, (r.status_code, r.text[:500], call)
    if r.status_code >= 400:
        _assert_envelope(r)
    elif action == "upload":
        assert r.status_code == 201 and r.json()["id"]


def test_after_the_battery_the_server_serves_and_wrote_only_voices(battery_server):
    # Runs after the two properties above (file order): the same server process.
    srv = battery_server
    r = httpx.post(f"{srv.url}/v1/audio/speech", timeout=60,
                   json={"model": "tts-1", "voice": "alloy", "input": "Still here.", "response_format": "wav"})
    assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
    assert httpx.get(f"{srv.url}/health").status_code == 200
    assert srv.proc.poll() is None
    assert [p.name for p in srv.root.iterdir()] in ([], ["voices"])
    if srv.voices.exists():
        names = sorted(p.name for p in srv.voices.iterdir())
        stems = {p.rsplit(".", 1)[0] for p in names}
        assert all(not n.startswith(".") for n in names), names  # no temporary upload left behind
        assert sorted(names) == sorted([f"{s}.json" for s in stems] + [f"{s}.wav" for s in stems]), names
    if SEEN["speech"]:  # the battery ran in this session: it reached both the 200 and the 4xx paths
        assert SEEN["speech"].count(200) >= 5 and sum(400 <= s < 500 for s in SEEN["speech"]) >= 5, SEEN
    # Hypothesis's own cache (.hypothesis/) is the test process's, not the server's.
    assert _without_hypothesis(_git_status()) == _without_hypothesis(srv.git_status_before)


def _without_hypothesis(status: str) -> list[str]:
    return [line for line in status.splitlines() if ".hypothesis/" not in line]
