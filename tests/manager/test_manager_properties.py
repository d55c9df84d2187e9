"""Property test (Hypothesis) against the real manager with a shipped-like models.json and a real Piper
model server: arbitrary JSON values, strings and unicode at /v1/audio/speech and the voice routes.

Whatever is sent: never a 5xx, never a hang past REQUEST_BOUND_S, every error in OpenAI's envelope,
every 200 of /v1/audio/speech a decodable file of the requested format (issue 17). Bounded in time:
the examples stop after TIME_BUDGET_S, and the manager must still serve a valid request at the end."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio_check import decode
from manager_harness import ROOT, ManagerProcess
from ports import free_port

REQUEST_BOUND_S = 30.0
TIME_BUDGET_S = 60.0
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]


def shipped_like_models() -> dict:
    """models.json as shipped, with free ports and without the GPU entry (no GPU here)."""
    data = json.loads((ROOT / "models.json").read_text())
    data["models"] = [m for m in data["models"] if m["runtime"]["type"] == "process"]
    for m in data["models"]:
        m["runtime"]["port"] = free_port()
    return data


@pytest.fixture(scope="module")
def mgr(tmp_path_factory):
    m = ManagerProcess(Path(tmp_path_factory.mktemp("props")), shipped_like_models())
    r = httpx.post(f"{m.url}/v1/audio/speech", json={"model": "tts-1", "input": "Warm.", "voice": "alloy"}, timeout=120)
    assert r.status_code == 200
    m.t_end = time.monotonic() + TIME_BUDGET_S
    yield m
    m.stop()


json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=12)
texts = st.text(max_size=120) | st.text(st.characters(exclude_categories=()), max_size=20) | st.sampled_from(["", " ", ".", "\u2014", "...", "\u200b\u200b", "\ufffd", "a\x00b", "\x07", "Hello."])
field_values = {
    "model": st.sampled_from(["piper", "tts-1", "gpt-4o-mini-tts", "nope", "", "PIPER"]) | json_values,
    "input": texts | json_values,
    "voice": st.sampled_from(["alloy", "joe", "nova", "", "../etc/passwd"]) | st.text(max_size=20) | json_values,
    "response_format": st.sampled_from(FORMATS + ["ogg", ""]) | json_values,
    "speed": st.floats(allow_nan=False, allow_infinity=False, min_value=-5, max_value=10) | json_values,
    "stream_format": st.sampled_from(["audio", "sse", "x"]) | json_values,
    "instructions": texts,
}
valid_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["piper", "tts-1", "gpt-4o-mini-tts"]), "input": texts,
     "voice": st.sampled_from(["alloy", "joe", "nova"]), "response_format": st.sampled_from(FORMATS)},
    optional={"speed": st.floats(min_value=0.25, max_value=4.0), "stream_format": st.sampled_from(["audio", "sse"])})
speech_bodies = valid_bodies | valid_bodies | st.fixed_dictionaries({"model": st.sampled_from(["piper", "tts-1"]), "input": texts},
                                      optional={k: v for k, v in field_values.items() if k not in ("input", "model")}) \
    | st.dictionaries(st.sampled_from(sorted(field_values)) | st.text(max_size=10), json_values, max_size=6) \
    | json_values


# Two classes of input that the model server used to get wrong (issue 17's server half): a NUL in
# `input` (a 500 "embedded null character") and inputs with nothing to speak (an empty 200). They are
# in the strategies above, and checked one by one through the manager below.
NOTHING_TO_SPEAK = ["\u2014", "...", ".", "\u200b\u200b", "\ufffd"]


def check_answer(r: httpx.Response, what: str) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:500])
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), (what, body)


def out_of_time(m) -> bool:
    return time.monotonic() > m.t_end


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
@given(body=speech_bodies)
def test_speech_never_5xx_and_200_decodes(mgr, body):
    if out_of_time(mgr):
        return
    raw = json.dumps(body).encode()
    r = httpx.post(f"{mgr.url}/v1/audio/speech", content=raw, headers={"content-type": "application/json"}, timeout=REQUEST_BOUND_S)
    check_answer(r, body)
    if r.status_code == 200:
        assert r.content, ("an empty 200", body)
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
            assert events and events[-1]["type"] == "speech.audio.done", body
        else:
            fmt = body.get("response_format", "mp3") if isinstance(body, dict) else "mp3"
            decode(r.content, fmt)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_speech_raw_bytes_never_5xx(mgr, raw):
    if out_of_time(mgr):
        return
    r = httpx.post(f"{mgr.url}/v1/audio/speech", content=raw, headers={"content-type": "application/json"}, timeout=REQUEST_BOUND_S)
    check_answer(r, raw)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(voice_id=st.text(min_size=1, max_size=30), method=st.sampled_from(["GET", "DELETE"]),
       model=st.sampled_from(["piper", "tts-1", None, "nope"]) | st.text(max_size=10))
def test_voice_routes_never_5xx(mgr, voice_id, method, model):
    if out_of_time(mgr):
        return
    params = {} if model is None else {"model": model.encode("utf-8", "surrogatepass").decode("utf-8", "replace")}
    url = f"{mgr.url}/v1/audio/voices/{quote(voice_id.encode('utf-8', 'surrogatepass'), safe='')}"
    r = httpx.request(method, url, params=params, timeout=REQUEST_BOUND_S)
    check_answer(r, (method, voice_id, model))
    r = httpx.get(f"{mgr.url}/v1/audio/voices", params=params, timeout=REQUEST_BOUND_S)
    check_answer(r, ("list", model))


@pytest.mark.parametrize("text", ["a\x00b", *NOTHING_TO_SPEAK])
def test_server_gaps_through_the_manager(mgr, text):
    r = httpx.post(f"{mgr.url}/v1/audio/speech", json={"model": "piper", "input": text, "voice": "alloy", "response_format": "wav"},
                   timeout=REQUEST_BOUND_S)
    check_answer(r, text)
    assert r.status_code == 200, (text, r.status_code, r.text[:300])  # spoken (NUL as a space) or a short silence
    assert decode(r.content, "wav").duration > 0


def test_still_serves_after_the_properties(mgr):
    r = httpx.post(f"{mgr.url}/v1/audio/speech", json={"model": "piper", "input": "Still here.", "voice": "alloy",
                                                       "response_format": "wav"}, timeout=120)
    assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
    assert "Traceback" not in mgr.log()
