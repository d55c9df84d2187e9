"""The pure parts of jobs: cutting long text into chunks, joining the chunks' WAVs, and how a chunk
answers a quota refusal (wait it out or fail at once)."""

from __future__ import annotations

import io
import re
import wave

import pytest

from voxgate_manager.jobs.chunking import chunk_text
from voxgate_manager.jobs.wav import PCMFormat, WavError, join_wavs, split_wav, wav_header


def _words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


@pytest.mark.parametrize("max_chars", [40, 200, 1000])
def test_chunks_keep_every_word_in_order_and_respect_the_limit(max_chars):
    text = ("Short one. " + "A much longer sentence that keeps going, with commas, clauses and more words than fit " * 3
            + "in one chunk! Then a question? And\n\na new paragraph without an ending")
    chunks = chunk_text(text, max_chars)
    assert all(0 < len(c) <= max_chars for c in chunks)
    assert _words(" ".join(chunks)) == _words(text)


def test_chunks_pack_whole_sentences():
    assert chunk_text("One. Two. Three.", 10) == ["One. Two.", "Three."]
    assert chunk_text("   ", 10) == []


def _wav(samples: bytes, rate: int = 22050, streamed: bool = False) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    data = buf.getvalue()
    if streamed:  # a streamed WAV's header has placeholder sizes
        data = data[:4] + b"\xff\xff\xff\xff" + data[8:40] + b"\xff\xff\xff\xff" + data[44:]
    return data


def test_split_and_join_wavs(tmp_path):
    a, b = bytes(range(200)) * 10, bytes(reversed(range(200))) * 5
    fmt, pcm = split_wav(_wav(a, streamed=True))
    assert fmt == PCMFormat(1, 22050, 16) and pcm == a
    (tmp_path / "0.wav").write_bytes(_wav(a))
    (tmp_path / "1.wav").write_bytes(_wav(b, streamed=True))
    size, seconds = join_wavs([tmp_path / "0.wav", tmp_path / "1.wav"], tmp_path / "out.wav")
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.getframerate() == 22050 and w.readframes(w.getnframes()) == a + b
    assert size == 44 + len(a) + len(b) and seconds == pytest.approx((len(a) + len(b)) / 44100)
    assert wav_header(fmt, 10)[:4] == b"RIFF"
    (tmp_path / "2.wav").write_bytes(_wav(a, rate=24000))
    with pytest.raises(WavError):
        join_wavs([tmp_path / "0.wav", tmp_path / "2.wav"], tmp_path / "bad.wav")
    with pytest.raises(WavError):
        split_wav(b"ID3 not a wav")


def _runner_calling(monkeypatch, answers):
    """A JobRunner whose chunks go to a stand-in for the gateway's synthesize: each call takes the
    next answer (an APIError is raised), and sleeps are recorded rather than waited."""
    import asyncio

    from voxgate_manager.jobs import runner as runner_mod

    calls, slept = [], []

    async def fake_synthesize(manager, ctl, payload, user_id, request=None):
        calls.append(user_id)
        a = answers[len(calls) - 1]
        if isinstance(a, Exception):
            raise a
        return a

    async def no_sleep(s):
        slept.append(s)

    monkeypatch.setattr(runner_mod, "synthesize", fake_synthesize)
    monkeypatch.setattr(runner_mod.asyncio, "sleep", no_sleep)
    r = object.__new__(runner_mod.JobRunner)
    r.manager, r.retry_budget_s = None, 300.0
    job = {"id": "j1", "user_id": 7, "voice": "alloy", "speed": 1.0}
    return (lambda: asyncio.run(r._synthesize_chunk(None, job, "Some text."))), calls, slept


def test_a_job_waits_out_a_per_minute_quota_but_fails_at_once_on_a_daily_one(monkeypatch):
    from voxgate_manager.errors import APIError

    minute = APIError(429, "user 'user:7' reached its limit requests_per_minute=2", code="quota_exceeded",
                      headers={"Retry-After": "20"})
    run, calls, slept = _runner_calling(monkeypatch, [minute, b"RIFF..."])
    assert run() == b"RIFF..." and calls == [7, 7] and slept == [2.0]  # backed off, then made; counted for user 7
    daily = APIError(429, "user 'user:7' reached its limit chars_per_day=100", code="quota_exceeded",
                     headers={"Retry-After": "40000"})
    run, calls, slept = _runner_calling(monkeypatch, [daily, b"never"])
    with pytest.raises(APIError) as exc:
        run()
    assert exc.value.code == "quota_exceeded" and calls == [7] and slept == []
