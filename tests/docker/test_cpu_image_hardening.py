"""Issue 17 in the CPU image, which is ``voxgate-server[piper]`` installed as the README says:
voice upload works without the chatterbox extra's soundfile, and ``docker stop`` is a clean stop
(exit code 0, no traceback, "Finished server process" last). With ``VOXGATE_TEST_DOCKER=1`` (CI) a
missing engine or image is a failure."""

from __future__ import annotations

import httpx
import pytest

from audio_check import decode
from image_harness import CPU_IMAGE, docker_client, start

LABEL = {"voxgate.test": "tests/docker/test_cpu_image_hardening.py"}
CLIP_TEXT = ("This clip becomes a voice in the library. It is spoken by Piper, it is longer than five "
             "seconds, and the image must measure it without the chatterbox extra.")


@pytest.fixture(scope="module")
def running():
    with docker_client(CPU_IMAGE) as cli:
        box = start(cli, CPU_IMAGE, LABEL)
        try:
            yield box
        finally:
            box.container.remove(force=True)


def test_voice_upload_without_soundfile(running):
    probe = running.container.exec_run(["/opt/venv/bin/python", "-c", "import soundfile"])
    assert probe.exit_code != 0  # the README's install has no soundfile: the upload must not need it
    clip = httpx.post(f"{running.url}/v1/audio/speech", timeout=120,
                      json={"model": "tts-1", "voice": "alloy", "input": CLIP_TEXT, "response_format": "wav"}).content
    r = httpx.post(f"{running.url}/v1/audio/voices", files={"file": ("clip.wav", clip)},
                   data={"name": "In The Image"}, timeout=60)
    assert r.status_code == 201, r.text
    assert r.json()["duration_s"] == pytest.approx(decode(clip, "wav").duration, abs=0.1)
    assert httpx.delete(f"{running.url}/v1/audio/voices/in-the-image", timeout=30).json()["deleted"] is True


def test_docker_stop_is_a_clean_stop(running):
    # Runs last in this module: it stops the container.
    container = running.container
    assert httpx.post(f"{running.url}/v1/audio/speech", timeout=60,
                      json={"model": "tts-1", "voice": "alloy", "input": "."}).status_code == 200
    container.stop(timeout=15)
    container.reload()
    log = container.logs().decode(errors="replace")
    lines = [line for line in log.splitlines() if line.strip()]
    assert container.attrs["State"]["ExitCode"] == 0, log[-2000:]
    assert "Finished server process" in lines[-1], lines[-5:]
    assert log.count("Started server process") == 1
    for bad in ("Traceback", "Event loop is closed", "ERROR"):
        assert bad not in log, log[-2000:]
