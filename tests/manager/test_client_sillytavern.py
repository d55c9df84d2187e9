"""SillyTavern's "OpenAI Compatible" provider forwards exactly five fields,
``{model, input, voice, response_format: 'mp3', speed}``, with a Bearer key and plays the answer as
one blob. A voice preset in models.json is how its users reach every other setting."""

from __future__ import annotations

import httpx
from audio_check import decode
from manager_harness import ManagerProcess, piper_process_model

KEY = "st-key"
TEXT = "The old lighthouse keeper climbed the stairs once more."


def test_sillytavern_five_field_request_with_a_voice_preset(tmp_path) -> None:
    presets = {"narrator": {"voice": "joe", "speed": 0.6, "description": "a slow narrator"}}
    m = ManagerProcess(tmp_path, [piper_process_model("piper", aliases=["tts-1"], voice_presets=presets)],
                       env={"VOXGATE_API_KEYS": KEY})
    try:
        def st(voice: str) -> httpx.Response:
            body = {"model": "tts-1", "input": TEXT, "voice": voice, "response_format": "mp3", "speed": 1}
            assert len(body) == 5
            return httpx.post(f"{m.url}/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)

        plain, preset = st("joe"), st("narrator")
        assert plain.status_code == 200 and preset.status_code == 200, (plain.text, preset.text)
        a, b = decode(plain.content, "mp3"), decode(preset.content, "mp3")  # whole files decode
        ratio = b.duration / a.duration
        assert 1.4 < ratio < 2.0, (a.duration, b.duration)  # the preset's speed 0.6 beat the request's 1
        voices = httpx.get(f"{m.url}/v1/audio/voices", params={"model": "tts-1"}, headers={"Authorization": f"Bearer {KEY}"}).json()
        [entry] = [v for v in voices["voices"] if v["id"] == "narrator"]
        assert entry["preset_of"] == "joe" and entry["description"] == "a slow narrator"
        unknown = st("nobody")
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "voice"
    finally:
        m.stop()
