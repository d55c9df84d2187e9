"""The CPU image built from the real Dockerfile serves speech over HTTP.

Runs the image that ``scripts/ci/docker-up.sh`` (``build-tts-server.sh --target cpu``) built, on a
real Docker engine, and checks it from outside as a user would: /health, real Piper audio in
mp3 and wav that PocketSphinx understands, the HEALTHCHECK, a non-root server process, $PORT and
the two volumes. With ``VOXGATE_TEST_DOCKER=1`` (CI) a missing engine or image is a failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from audio_check import decode, transcribe, wer
from image_harness import CPU_IMAGE as IMAGE
from image_harness import Running, docker_client, start

LABEL = {"voxgate.test": "tests/docker/test_cpu_image.py"}
TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


@pytest.fixture(scope="module")
def client():
    with docker_client(IMAGE) as cli:
        yield cli


def _start(client, port: int = 8000, env: dict[str, str] | None = None, timeout: float = 180.0) -> Running:
    return start(client, IMAGE, LABEL, port=port, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def server(client) -> Iterator[Running]:
    running = _start(client)
    yield running
    running.container.remove(force=True)


@pytest.mark.parametrize("fmt,codec,mime", [("mp3", "mp3", "audio/mpeg"), ("wav", "pcm_s16le", "audio/wav")])
def test_speech_over_http(server, fmt, codec, mime):
    r = httpx.post(f"{server.url}/v1/audio/speech", timeout=180,
                   json={"model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": fmt})
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith(mime)
    audio = decode(r.content, fmt)
    assert audio.codec.startswith(codec)
    assert audio.duration > 0.5
    assert float(np.sqrt(np.mean(audio.samples ** 2))) > 0.01, "silent audio"
    assert float(np.abs(audio.samples).max()) > 0.1
    hypothesis = transcribe(audio.samples, audio.sample_rate)
    assert wer(TEXT, hypothesis) <= 0.5, hypothesis


def test_bad_request_gets_openai_error(server):
    r = httpx.post(f"{server.url}/v1/audio/speech", timeout=30,
                   json={"model": "tts-1", "voice": "alloy", "input": ""})
    assert r.status_code == 400
    assert set(r.json()["error"]) >= {"message", "type", "param", "code"}


def test_server_runs_as_non_root(server):
    assert server.container.attrs["Config"]["User"] == "voxgate"
    # PID 1 is the server itself (the entrypoint shell execs it): its real and effective uids.
    code, out = server.container.exec_run(["sh", "-c", "grep '^Uid:' /proc/1/status; cat /proc/1/cmdline"])
    assert code == 0, out
    uid_line, cmdline = out.decode().split("\n", 1)
    real, effective = uid_line.split()[1:3]
    assert real != "0" and effective != "0", uid_line
    assert "voxgate-server" in cmdline


def test_healthcheck_reports_healthy(server):
    check = server.container.attrs["Config"]["Healthcheck"]["Test"]
    assert any("/health" in part for part in check), check
    deadline = time.monotonic() + 90  # the first check runs one interval (10 s) after start
    while time.monotonic() < deadline:
        server.container.reload()
        health = server.container.attrs["State"]["Health"]
        if health["Status"] == "healthy":
            break
        assert health["Status"] == "starting", health
        time.sleep(0.5)
    assert health["Status"] == "healthy", health
    assert health["Log"][-1]["ExitCode"] == 0


def test_image_layout(client, server):
    config = client.images.get(IMAGE).attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PORT"] == "8000"
    assert env["HF_HOME"] == "/data/hf" and env["VOXGATE_VOICES_DIR"] == "/voices"
    assert set(config["Volumes"]) == {"/data/hf", "/voices"}
    assert "8000/tcp" in config["ExposedPorts"]
    # Both volumes are writable by the server's user; no torch; the build's CA bundle is gone.
    script = (
        "touch /data/hf/.w /voices/.w && "
        "python -c 'import importlib.util as u, sys; sys.exit(u.find_spec(\"torch\") is not None)' && "
        "test ! -e /tmp/build-ca && ! ls /tmp/build-ca-bundle.* 2>/dev/null"
    )
    code, out = server.container.exec_run(["sh", "-c", script])
    assert code == 0, out.decode(errors="replace")


@pytest.mark.parametrize("variable", ["PORT", "VOXGATE_PORT"])
def test_listens_on_the_configured_port(client, variable):
    running = _start(client, port=9123, env={variable: "9123"})
    try:
        body = httpx.get(f"{running.url}/health", timeout=5).json()
        assert body["status"] == "ok"
        # The HEALTHCHECK probes the same port.
        code, out = running.container.exec_run(running.container.attrs["Config"]["Healthcheck"]["Test"][1:])
        assert code == 0, out
    finally:
        running.container.remove(force=True)
