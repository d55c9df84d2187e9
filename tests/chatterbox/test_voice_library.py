"""Voice library and its management API over real HTTP (no model needed)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from turbo_helpers import encode, serve_in_thread


def _app(voices: Path, **limits):  # noqa: ANN202
    from voxgate_server.app import create_app
    from voxgate_server.settings import Settings
    from voxgate_server.voice_library import VoiceLibrary, VoiceLibrarySettings

    app = create_app(Settings(voices_dir=voices, engines=[]), engines=[])
    if limits:
        app.state.voice_library = VoiceLibrary(voices, VoiceLibrarySettings(**limits))
    return app


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


@pytest.fixture()
def voices(tmp_path: Path) -> Path:
    return tmp_path / "voices"


@pytest.fixture()
def base_url(voices: Path):  # noqa: ANN201
    with serve_in_thread(_app(voices)) as url:
        yield url


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_upload_fetch_download_delete(fmt: str, base_url: str, voices: Path,
                                      reference_speech: tuple[np.ndarray, int]) -> None:
    clip = encode(*reference_speech, fmt)
    r = httpx.post(f"{base_url}/v1/audio/voices", files={"file": (f"clip.{fmt}", clip)},
                   data={"name": "Ada Lovelace", "language": "en-GB", "description": "calm"})
    assert r.status_code == 201, r.text
    voice = r.json()
    assert voice["id"] == "ada-lovelace" and voice["name"] == "Ada Lovelace"
    assert voice["format"] == fmt and voice["language"] == "en-GB" and voice["description"] == "calm"
    assert voice["duration_s"] == pytest.approx(reference_speech[0].size / reference_speech[1], abs=0.1)
    assert (voices / f"ada-lovelace.{fmt}").read_bytes() == clip
    assert sorted(p.name for p in voices.iterdir()) == sorted(["ada-lovelace.json", f"ada-lovelace.{fmt}"])

    got = httpx.get(f"{base_url}/v1/audio/voices/ada-lovelace")
    assert got.status_code == 200 and got.json() == voice
    dl = httpx.get(f"{base_url}/v1/audio/voices/ada-lovelace", params={"download": 1})
    assert dl.status_code == 200 and dl.content == clip

    again = httpx.post(f"{base_url}/v1/audio/voices", files={"file": ("x", clip)}, data={"name": "ada lovelace"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "voice_exists"

    deleted = httpx.delete(f"{base_url}/v1/audio/voices/ada-lovelace")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert list(voices.iterdir()) == []
    assert httpx.get(f"{base_url}/v1/audio/voices/ada-lovelace").status_code == 404
    assert httpx.delete(f"{base_url}/v1/audio/voices/ada-lovelace").status_code == 404


def test_voices_survive_restart(voices: Path, reference_wav: bytes) -> None:
    with serve_in_thread(_app(voices)) as url:
        r = httpx.post(f"{url}/v1/audio/voices", files={"file": ("me.wav", reference_wav)}, data={"name": "keeper"})
        assert r.status_code == 201
    with serve_in_thread(_app(voices)) as url:
        r = httpx.get(f"{url}/v1/audio/voices/keeper")
        assert r.status_code == 200 and r.json()["name"] == "keeper"


def _short_clip(reference_speech: tuple[np.ndarray, int]) -> bytes:
    samples, sr = reference_speech
    return encode(samples[: int(3 * sr)], sr, "wav")


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("too_short", "audio_too_short"),
        ("not_audio", "invalid_audio"),
        ("dotdot_name", "invalid_name"),
        ("slash_name", "invalid_name"),
        ("empty_name", "invalid_name"),
        ("reserved_name", "invalid_name"),
        ("no_file", "missing_required_parameter"),
    ],
)
def test_bad_upload_is_400_and_changes_nothing(case: str, code: str, voices: Path, base_url: str,
                                               reference_wav: bytes,
                                               reference_speech: tuple[np.ndarray, int]) -> None:
    voices.mkdir()
    (voices / "existing.wav").write_bytes(reference_wav)
    before = _snapshot(voices)
    files = {"file": ("clip.wav", reference_wav)}
    data = {"name": "fine"}
    if case == "too_short":
        files = {"file": ("clip.wav", _short_clip(reference_speech))}
    elif case == "not_audio":
        files = {"file": ("clip.wav", b"RIFF....WAVEfmt this is not audio at all" * 50)}
    elif case == "dotdot_name":
        data = {"name": "../escaped"}
    elif case == "slash_name":
        data = {"name": "sub/dir"}
    elif case == "empty_name":
        data = {"name": "!!!"}
    elif case == "reserved_name":
        data = {"name": "Default"}
    elif case == "no_file":
        files = {"attachment": ("clip.wav", reference_wav)}  # multipart, but no 'file' part
    r = httpx.post(f"{base_url}/v1/audio/voices", files=files, data=data)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["type"] == "invalid_request_error" and err["message"]
    assert _snapshot(voices) == before
    assert not (voices.parent / "escaped.wav").exists()


def test_upload_over_limit_is_413_before_parsing(voices: Path, reference_wav: bytes) -> None:
    with serve_in_thread(_app(voices, upload_max_bytes=100_000)) as url:
        big = reference_wav * 2  # > 100 kB + multipart allowance
        r = httpx.post(f"{url}/v1/audio/voices", files={"file": ("big.wav", big)}, data={"name": "big"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
        # Under the raw cap but over the clip limit: still refused by the library check.
        r = httpx.post(f"{url}/v1/audio/voices", files={"file": ("big.wav", reference_wav[:150_000])},
                       data={"name": "big"})
        assert r.status_code == 413
    assert not voices.exists() or list(voices.iterdir()) == []


def test_upload_needs_multipart(base_url: str) -> None:
    r = httpx.post(f"{base_url}/v1/audio/voices", json={"name": "x"})
    assert r.status_code == 415 and r.json()["error"]["type"] == "invalid_request_error"


def test_sanitized_ids_stay_inside(tmp_path: Path) -> None:
    from voxgate_server.voice_library import sanitize_voice_id

    assert sanitize_voice_id("Zoë  O'Brien") == "zoe-o-brien"
    assert sanitize_voice_id("../../etc/passwd") == "etc-passwd"
    assert sanitize_voice_id("C:\\\\x\\\\y") == "c-x-y"
    assert sanitize_voice_id("a" * 100) == "a" * 64
    assert sanitize_voice_id("...") == ""


def test_hand_placed_clips_are_listed(voices: Path, reference_wav: bytes) -> None:
    from voxgate_server.voice_library import VoiceLibrary

    voices.mkdir()
    (voices / "narrator.wav").write_bytes(reference_wav)
    (voices / "Bad Name.wav").write_bytes(reference_wav)
    (voices / "notes.txt").write_text("not a voice")
    listed = VoiceLibrary(voices).list()
    assert [v.id for v in listed] == ["narrator"]
    assert listed[0].name == "narrator" and listed[0].duration_s and listed[0].duration_s > 5


def test_each_clip_reports_its_content_hash_and_a_replaced_clip_a_new_one(voices: Path, base_url: str,
                                                                          reference_speech: tuple[np.ndarray, int]) -> None:
    """The manager's response cache keys a cloned voice by this hash: a clip replaced on the
    server (here by hand, behind the API) must report the new file's hash, not a remembered one."""
    import hashlib
    import os

    from voxgate_server.engines.chatterbox_turbo.engine import ChatterboxTurboEngine
    from voxgate_server.settings import Settings

    clip = encode(*reference_speech, "wav")
    r = httpx.post(f"{base_url}/v1/audio/voices", files={"file": ("clip.wav", clip)}, data={"name": "Hashed"})
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(clip).hexdigest()
    assert httpx.get(f"{base_url}/v1/audio/voices/hashed").json()["sha256"] == hashlib.sha256(clip).hexdigest()
    # a cloning engine lists the same hash with the voice (GET /v1/audio/voices), no model needed
    engine = ChatterboxTurboEngine(Settings(voices_dir=voices, engines=[]))
    listed = {v.id: v for v in engine.voices()}
    assert listed["hashed"].sha256 == hashlib.sha256(clip).hexdigest() and not listed["hashed"].builtin

    other = encode(reference_speech[0][::-1].copy(), reference_speech[1], "wav")  # same length, other audio
    assert len(other) == len(clip) and other != clip
    tmp = voices / ".hand-copy"
    tmp.write_bytes(other)
    os.replace(tmp, voices / "hashed.wav")
    assert httpx.get(f"{base_url}/v1/audio/voices/hashed").json()["sha256"] == hashlib.sha256(other).hexdigest()
    assert {v.id: v for v in engine.voices()}["hashed"].sha256 == hashlib.sha256(other).hexdigest()
    # rewritten in place (same inode and size): the new mtime still gets it re-hashed
    with (voices / "hashed.wav").open("r+b") as f:
        f.write(clip)
    st = (voices / "hashed.wav").stat()
    os.utime(voices / "hashed.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert httpx.get(f"{base_url}/v1/audio/voices/hashed").json()["sha256"] == hashlib.sha256(clip).hexdigest()
