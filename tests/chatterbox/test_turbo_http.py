"""chatterbox-turbo through the real server (a child process), on the random checkpoint.

Lengths are exact because the checkpoint never emits the stop token: a text chunk becomes
``tokens + 3`` speech tokens of 40 ms (960 samples at 24 kHz). The server caps each chunk at
0.2 s (5 tokens) and each request at 0.4 s unless a request asks for less.
"""

from __future__ import annotations

import concurrent.futures
import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from turbo_helpers import ServerProcess, decode

TOKEN_SAMPLES = 960
CHUNK_TOKENS = 5
PAUSE_SAMPLES = 24000 * 120 // 1000


def chunk_samples(tokens: int = CHUNK_TOKENS) -> int:
    return (tokens + 3) * TOKEN_SAMPLES


@pytest.fixture(scope="module")
def server(turbo_ckpt: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    work = tmp_path_factory.mktemp("turbo_http")
    proc = ServerProcess({
        "VOXGATE_ENGINES": "chatterbox-turbo",
        "VOXGATE_VOICES_DIR": str(work / "voices"),
        "VOXGATE_CHUNK_PAUSE_MS": "120",
        "VOXGATE_QUEUE_SIZE": "4",
        "VOXGATE_CHATTERBOX_CHECKPOINT_DIR": str(turbo_ckpt["dir"]),
        "VOXGATE_CHATTERBOX_CHUNK_MAX_DURATION_S": "0.2",
        "VOXGATE_CHATTERBOX_MAX_DURATION_S": "0.4",
        "VOXGATE_CHATTERBOX_MAX_DURATION_CAP_S": "8",
        "VOXGATE_CHATTERBOX_VOICE_MAP": "nova=joe",
        "HF_HUB_OFFLINE": "1",
    }, work / "server.log")
    try:
        proc.wait_ready()
        proc.voices_dir = work / "voices"
        yield proc
    finally:
        proc.stop()


def speech(server: ServerProcess, **body) -> httpx.Response:  # noqa: ANN003
    payload = {"model": "chatterbox-turbo", "input": "Hello there [laugh], this is a test.", "voice": "alloy",
               "response_format": "wav", **body}
    return httpx.post(f"{server.url}/v1/audio/speech", json=payload, timeout=300)


def wav_samples(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    samples, sr = decode(response.content)
    assert sr == 24000
    return samples


def test_health_was_503_while_loading(server: ServerProcess) -> None:
    assert 503 in server.health_codes and server.health_codes[-1] == 200
    log = server.log()
    assert "chatterbox-turbo warm-up made 3840 samples" in log  # 1 token + 3 silence
    # the load's fast start: torch and chatterbox imported on voxgate-server's own thread from its
    # first line (engines/preimport.py), upstream's modules built without their random init
    assert "engine libraries imported ahead in" in log and "(random init skipped)" in log
    assert log.index("engine libraries imported ahead") < log.index("checkpoint read in")
    body = httpx.get(f"{server.url}/health").json()
    assert body["engines"]["chatterbox-turbo"]["state"] == "ready"
    assert body["engines"]["chatterbox-turbo"]["concurrency"] == 1


def test_models_advertise_controls_and_tags(server: ServerProcess) -> None:
    model = httpx.get(f"{server.url}/v1/models/chatterbox-turbo").json()
    caps = model["capabilities"]
    assert set(caps["generation_params"]) == {"temperature", "top_p", "top_k", "repetition_penalty", "seed",
                                              "max_duration_s"}
    assert "[laugh]" in caps["paralinguistic_tags"] and "[sigh]" in caps["paralinguistic_tags"]
    assert caps["cloning"] is True and caps["sample_rate"] == 24000 and caps["device"] == "cpu"
    assert caps["openai_voices"]["alloy"] == "default"


def test_wav_has_the_capped_length(server: ServerProcess) -> None:
    samples = wav_samples(speech(server, seed=1))
    assert samples.size == chunk_samples()
    assert np.isfinite(samples).all() and 0 < np.abs(samples).max() <= 1.0


def test_mp3(server: ServerProcess) -> None:
    import av

    r = speech(server, response_format="mp3", seed=1)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    with av.open(io.BytesIO(r.content)) as container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
    decoded = np.concatenate(frames, axis=-1).reshape(-1)
    # The encoder pads to whole frames and adds its priming delay; the length stays close.
    assert abs(decoded.size - chunk_samples()) < 3000


def test_long_text_streams_chunk_by_chunk(server: ServerProcess) -> None:
    text = "The first sentence is short. The second sentence comes after it and ends here."
    samples = wav_samples(speech(server, input=text, seed=2))
    # Two text chunks of 5 tokens each, with the server's pause between them.
    assert samples.size == 2 * chunk_samples() + PAUSE_SAMPLES
    # max_duration_s caps the whole request: 0.2 s is one chunk's worth, the rest is dropped.
    capped = wav_samples(speech(server, input=text, seed=2, max_duration_s=0.2))
    assert capped.size == chunk_samples()


def test_seed_makes_output_reproducible(server: ServerProcess) -> None:
    a = wav_samples(speech(server, seed=7, temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.3))
    b = wav_samples(speech(server, seed=7, temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.3))
    c = wav_samples(speech(server, seed=8, temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.3))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", 0), ("temperature", 9.5), ("top_p", 1.5), ("top_k", -1), ("repetition_penalty", 0.5),
     ("seed", -3), ("max_duration_s", 9.0), ("max_duration_s", 0), ("top_k", 2.5), ("seed", "x")],
)
def test_bad_generation_controls_are_400(server: ServerProcess, field: str, value: object) -> None:
    r = speech(server, **{field: value})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field and err["type"] == "invalid_request_error"


def test_unknown_voice_is_400(server: ServerProcess) -> None:
    r = speech(server, voice="nobody-here")
    assert r.status_code == 400 and r.json()["error"]["param"] == "voice"


def test_upload_then_clone_then_concurrent_equals_sequential(server: ServerProcess, reference_wav: bytes) -> None:
    r = httpx.post(f"{server.url}/v1/audio/voices", files={"file": ("joe.wav", reference_wav)},
                   data={"name": "joe", "description": "Piper joe"}, timeout=60)
    assert r.status_code == 201, r.text
    listed = httpx.get(f"{server.url}/v1/audio/voices", params={"model": "chatterbox-turbo"}).json()["voices"]
    assert {"joe", "default"} <= {v["id"] for v in listed}
    # VOXGATE_CHATTERBOX_VOICE_MAP=nova=joe: the OpenAI name now reaches the uploaded voice.
    assert any(v["id"] == "nova" and v.get("alias_of") == "joe" for v in listed)

    requests = [dict(voice="joe", seed=11), dict(voice="alloy", seed=12), dict(voice="nova", seed=11)]
    sequential = [wav_samples(speech(server, **body)) for body in requests]
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        concurrent_out = [wav_samples(f.result()) for f in [pool.submit(speech, server, **b) for b in requests]]
    for seq, conc in zip(sequential, concurrent_out):
        assert np.array_equal(seq, conc)
    # The cloned voice really conditions the output: same seed, other voice, other audio.
    assert not np.array_equal(sequential[0], sequential[1])
    assert np.array_equal(sequential[0], sequential[2])

    # Deleting the voice removes it from the engine too.
    assert httpx.delete(f"{server.url}/v1/audio/voices/joe").status_code == 200
    assert speech(server, voice="joe").status_code == 400


def test_hand_placed_short_clip_is_a_clear_400(server: ServerProcess, reference_speech) -> None:  # noqa: ANN001
    from turbo_helpers import encode

    samples, sr = reference_speech
    server.voices_dir.mkdir(exist_ok=True)
    (server.voices_dir / "tiny.wav").write_bytes(encode(samples[: 2 * sr], sr, "wav"))
    try:
        r = speech(server, voice="tiny")
        assert r.status_code == 400 and r.json()["error"]["code"] == "voice_too_short"
        assert httpx.get(f"{server.url}/health").status_code == 200
    finally:
        (server.voices_dir / "tiny.wav").unlink()


def _audio_seconds_total(server: ServerProcess) -> float:
    metrics = httpx.get(f"{server.url}/metrics").text
    lines = [l for l in metrics.splitlines() if l.startswith("voxgate_audio_seconds_total")]
    return float(lines[0].split()[-1]) if lines else 0.0  # no sample before the first request


def test_client_disconnect_stops_generation(server: ServerProcess) -> None:
    """A 40-chunk request (8 s of speech at 5 tokens a chunk) is abandoned after its first audio:
    the one worker frees up and far less than the whole request is generated."""
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    before = _audio_seconds_total(server)
    with httpx.Client(timeout=300) as client:
        with client.stream("POST", f"{server.url}/v1/audio/speech", json={
                "model": "chatterbox-turbo", "input": text, "voice": "alloy", "response_format": "pcm",
                "max_duration_s": 8.0, "seed": 1}) as r:
            assert r.status_code == 200
            next(r.iter_bytes())
    deadline = time.monotonic() + 120
    while httpx.get(f"{server.url}/health").json()["engines"]["chatterbox-turbo"]["active"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(f"{server.url}/health").json()["engines"]["chatterbox-turbo"]["active"] == 0
    assert 'status="499"' in httpx.get(f"{server.url}/metrics").text
    assert _audio_seconds_total(server) - before < 2.0
