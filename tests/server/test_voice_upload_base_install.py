"""Voice upload works in the README's own install (``voxgate-server[piper]``), which has neither
``soundfile`` nor ``librosa`` (they come with the ``chatterbox`` extra). The test venv has them for
the chatterbox tests, so the server here runs with both made unimportable."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from audio_check import decode

CHATTERBOX_ONLY = ("soundfile", "librosa")
SPEECH = ("This clip becomes a voice in the library. It is spoken by Piper, it is longer than five "
          "seconds, and the server must measure it without any of the chatterbox extra's packages.")


def _piper_extra_lacks(module: str) -> bool:
    requires = importlib.metadata.requires("voxgate-server") or []
    piper_or_base = [r for r in requires if "extra ==" not in r or 'extra == "piper"' in r]
    return not any(r.split(";")[0].strip().lower().startswith(module) for r in piper_or_base)


@pytest.fixture(scope="module")
def base_install_server(server_factory, tmp_path_factory):
    blockers = tmp_path_factory.mktemp("not-installed")
    for name in CHATTERBOX_ONLY:
        (blockers / f"{name}.py").write_text(f"raise ImportError('{name} is not in voxgate-server[piper]')\n")
    check = subprocess.run([sys.executable, "-c", "import soundfile"], env={"PYTHONPATH": str(blockers)},
                           capture_output=True)
    assert check.returncode != 0  # the blocker works
    voices = tmp_path_factory.mktemp("voices")
    pythonpath = os.pathsep.join([str(blockers), os.environ.get("PYTHONPATH", "")])
    srv = server_factory({"PYTHONPATH": pythonpath, "VOXGATE_VOICES_DIR": str(voices)})
    srv.voices = voices
    return srv


def test_chatterbox_packages_are_not_what_the_readme_installs():
    for name in CHATTERBOX_ONLY:
        assert _piper_extra_lacks(name), f"{name} is now in the piper install: drop it from CHATTERBOX_ONLY"


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
def test_upload_list_download_delete(base_install_server, fmt):
    srv = base_install_server
    speech = httpx.post(f"{srv.url}/v1/audio/speech", timeout=120,
                        json={"model": "tts-1", "voice": "alloy", "input": SPEECH, "response_format": fmt})
    assert speech.status_code == 200
    clip = speech.content
    expected = decode(clip, fmt).duration
    assert expected > 5.5
    r = httpx.post(f"{srv.url}/v1/audio/voices", files={"file": (f"clip.{fmt}", clip)},
                   data={"name": f"Base {fmt}", "language": "en-US"}, timeout=60)
    assert r.status_code == 201, r.text
    voice = r.json()
    assert voice["id"] == f"base-{fmt}" and voice["format"] == fmt
    assert voice["duration_s"] == pytest.approx(expected, abs=0.1)
    got = httpx.get(f"{srv.url}/v1/audio/voices/{voice['id']}")
    assert got.status_code == 200 and got.json()["duration_s"] == voice["duration_s"]
    dl = httpx.get(f"{srv.url}/v1/audio/voices/{voice['id']}", params={"download": 1})
    assert dl.content == clip
    assert httpx.delete(f"{srv.url}/v1/audio/voices/{voice['id']}").json()["deleted"] is True
    assert not any(p.stem == voice["id"] for p in Path(srv.voices).iterdir())


@pytest.mark.parametrize(("payload", "code"), [
    (b"RIFF....WAVEfmt this is not audio at all" * 50, "invalid_audio"),
    (b"\x00" * 4096, "invalid_audio"),
])
def test_bad_clip_is_400(base_install_server, payload, code):
    r = httpx.post(f"{base_install_server.url}/v1/audio/voices", files={"file": ("clip.wav", payload)},
                   data={"name": "bad"}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in {code, "unsupported_audio_format"}


def test_other_container_is_unsupported(base_install_server):
    srv = base_install_server
    ogg = httpx.post(f"{srv.url}/v1/audio/speech", timeout=120,
                     json={"model": "tts-1", "voice": "alloy", "input": SPEECH, "response_format": "opus"}).content
    r = httpx.post(f"{srv.url}/v1/audio/voices", files={"file": ("clip.ogg", ogg)}, data={"name": "ogg"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_audio_format"


def test_short_clip_is_400(base_install_server):
    srv = base_install_server
    clip = httpx.post(f"{srv.url}/v1/audio/speech", timeout=60,
                      json={"model": "tts-1", "voice": "alloy", "input": "Too short.", "response_format": "wav"}).content
    r = httpx.post(f"{srv.url}/v1/audio/voices", files={"file": ("c.wav", clip)}, data={"name": "short"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "audio_too_short"
    assert list(Path(srv.voices).iterdir()) == []
