"""Home Assistant's Wyoming protocol against a running voxgate-manager and a real Piper server,
spoken to with the real ``wyoming`` client library (what Home Assistant's integration uses)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from audio_check import transcribe, wer
from manager_harness import ManagerProcess, piper_process_model
from ports import free_port
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice

HARVARD = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
LONG = " ".join(f"This is sentence number {i} of a long story that nobody will hear to the end." for i in range(45))  # < 4096 characters


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory):
    tmp: Path = tmp_path_factory.mktemp("wyoming")
    wport = free_port()
    model = piper_process_model("piper", aliases=["tts-1"], concurrency=2,
                                voice_presets={"narrator": {"voice": "joe", "speed": 0.9, "description": "slow joe"}})
    # Piper without its sampling noise: the same text is the same audio every run, so the word-error
    # checks below are deterministic (with noise, PocketSphinx heard one pair of sentences at WER 0.56
    # in one CI-like run and under 0.5 in others)
    model["runtime"]["environment"].update({"VOXGATE_PIPER_NOISE_SCALE": "0", "VOXGATE_PIPER_NOISE_W_SCALE": "0"})
    m = ManagerProcess(tmp, [model], env={"VOXGATE_WYOMING_PORT": str(wport)})
    m.wyoming_port = wport  # type: ignore[attr-defined]
    yield m
    m.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _client(mgr: ManagerProcess) -> AsyncTcpClient:
    c = AsyncTcpClient("127.0.0.1", mgr.wyoming_port)  # type: ignore[attr-defined]
    await c.connect()
    return c


async def _read_until(c: AsyncTcpClient, *types: str, timeout: float = 60) -> list[Event]:
    """Events up to and including the first of ``types``."""
    out: list[Event] = []
    while True:
        ev = await asyncio.wait_for(c.read_event(), timeout)
        assert ev is not None, f"connection closed after {[e.type for e in out]}"
        out.append(ev)
        if ev.type in types:
            return out


def _pcm(events: list[Event]) -> np.ndarray:
    return np.frombuffer(b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type)), dtype="<i2")


def test_describe_before_any_run_starts_nothing(mgr: ManagerProcess) -> None:
    async def go() -> Info:
        c = await _client(mgr)
        await c.write_event(Describe().event())
        ev = (await _read_until(c, "info"))[-1]
        await c.disconnect()
        return Info.from_event(ev)

    info = run(go())
    assert mgr.metric("voxgate_manager_cold_starts_total", model="piper") == 0
    assert mgr.status("piper")["state"] == "stopped"
    [prog] = info.tts
    assert prog.name == "piper" and prog.supports_synthesize_streaming and prog.installed
    names = [v.name for v in prog.voices]
    assert "piper:narrator" in names  # the preset is known from models.json alone


def test_synthesize_speaks_and_info_lists_the_reported_voices(mgr: ManagerProcess) -> None:
    text = HARVARD

    async def go() -> tuple[list[Event], Info]:
        c = await _client(mgr)
        await c.write_event(Synthesize(text=text, voice=SynthesizeVoice(name="piper:alloy")).event())
        events = await _read_until(c, "audio-stop", "error")
        await asyncio.sleep(1.5)  # the catalog reads the model's voices right after its start
        await c.write_event(Describe().event())
        info = Info.from_event((await _read_until(c, "info"))[-1])
        await c.disconnect()
        return events, info

    events, info = run(go())
    types = [e.type for e in events]
    assert types[0] == "audio-start" and types[-1] == "audio-stop" and "audio-chunk" in types, types
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (24000, 2, 1)
    pcm = _pcm(events)
    assert len(pcm) > 0.8 * 24000
    heard = transcribe(pcm.astype(np.float32) / 32768, 24000)
    assert wer(text, heard) <= 0.5, heard
    voices = {v.name: v for v in info.tts[0].voices}
    assert "en-US" in voices["piper:joe"].languages and "piper:alloy" in voices and "piper:narrator" in voices
    assert mgr.metric("voxgate_manager_requests_total", model="piper", outcome="ok") >= 1


def test_streamed_text_is_spoken_sentence_by_sentence_before_the_text_ends(mgr: ManagerProcess) -> None:
    async def go() -> tuple[list[Event], list[Event]]:
        c = await _client(mgr)
        await c.write_event(SynthesizeStart(voice=SynthesizeVoice(name="piper:joe")).event())
        for piece in ("The birch canoe ", "slid on the smooth planks. ", "Glue the sheet "):
            await c.write_event(SynthesizeChunk(text=piece).event())
        # the first sentence is complete: its audio must come before any more text is sent
        first = await _read_until(c, "audio-chunk", timeout=30)
        for piece in ("to the dark blue ", "background."):
            await c.write_event(SynthesizeChunk(text=piece).event())
        await c.write_event(Synthesize(text=HARVARD,
                                       voice=SynthesizeVoice(name="piper:joe")).event())  # legacy copy: ignored
        await c.write_event(SynthesizeStop().event())
        rest = await _read_until(c, "synthesize-stopped")
        await c.disconnect()
        return first, rest

    first, rest = run(go())
    assert [e.type for e in first] == ["audio-start", "audio-chunk"]
    events = first + rest
    assert [e.type for e in events].count("audio-start") == 2  # one run per sentence, as wyoming-piper
    assert [e.type for e in events].count("audio-stop") == 2
    assert events[-1].type == SynthesizeStopped().event().type
    assert not any(e.type == "error" for e in events)
    heard = transcribe(_pcm(events).astype(np.float32) / 32768, 24000)
    assert wer(HARVARD, heard) <= 0.5, heard


def test_streamed_sentences_queued_together_are_spoken_in_order(mgr: ManagerProcess) -> None:
    async def go() -> list[Event]:
        c = await _client(mgr)
        await c.write_event(SynthesizeStart(voice=SynthesizeVoice(name="piper:narrator")).event())
        await c.write_event(SynthesizeChunk(text=HARVARD + " ").event())
        await c.write_event(SynthesizeChunk(text="It is easy to tell the depth of a well.").event())
        await c.write_event(SynthesizeStop().event())
        events = await _read_until(c, "synthesize-stopped")
        await c.disconnect()
        return events

    events = run(go())
    assert [e.type for e in events].count("audio-stop") == 3 and not any(e.type == "error" for e in events)
    heard = transcribe(_pcm(events).astype(np.float32) / 32768, 24000)
    assert wer(HARVARD + " It is easy to tell the depth of a well.", heard) <= 0.5, heard
    assert mgr.status("piper")["requests_in_flight"] == 0


def test_bad_voices_get_error_events_and_the_connection_stays(mgr: ManagerProcess) -> None:
    async def go() -> list[Event]:
        c = await _client(mgr)
        got: list[Event] = []
        await c.write_event(Synthesize(text="Hello.", voice=SynthesizeVoice(name="piper:nobody")).event())
        got.append((await _read_until(c, "error", "audio-start"))[-1])
        await c.write_event(SynthesizeStart(voice=SynthesizeVoice(name="nobody-at-all")).event())
        got.append((await _read_until(c, "error", "audio-start"))[-1])
        await c.write_event(SynthesizeChunk(text="Hello there. ").event())
        await c.write_event(SynthesizeStop().event())
        got.append((await _read_until(c, "synthesize-stopped", "audio-start"))[-1])
        await c.write_event(Describe().event())
        got.append((await _read_until(c, "info"))[-1])
        await c.disconnect()
        return got

    a, b, stopped, info = run(go())
    assert a.type == "error" and Error.from_event(a).code in ("voice_not_found", "invalid_voice"), a
    assert "nobody" in Error.from_event(a).text
    assert b.type == "error" and Error.from_event(b).code in ("voice_not_found", "invalid_voice"), b
    assert stopped.type == "synthesize-stopped"  # nothing spoken for the failed stream, but it ends
    assert info.type == "info"


def test_twenty_concurrent_clients(mgr: ManagerProcess) -> None:
    async def one(i: int) -> list[Event]:
        c = await _client(mgr)
        await c.write_event(Synthesize(text=f"Client number {i}.", voice=SynthesizeVoice(name="piper:joe")).event())
        events = await _read_until(c, "audio-stop", "error", timeout=90)
        await c.disconnect()
        return events

    async def go() -> list[list[Event]]:
        return await asyncio.gather(*(one(i) for i in range(20)))

    results = run(go())
    for events in results:
        assert events[-1].type == "audio-stop" and len(_pcm(events)) > 0.3 * 24000, [e.type for e in events]
    assert mgr.status("piper")["requests_in_flight"] == 0


def test_disconnect_mid_stream_frees_the_model(mgr: ManagerProcess) -> None:
    async def go() -> float:
        c = await _client(mgr)
        await c.write_event(Synthesize(text=LONG, voice=SynthesizeVoice(name="piper:joe")).event())
        assert (await _read_until(c, "audio-chunk", "error"))[-1].type == "audio-chunk"
        assert mgr.status("piper")["requests_in_flight"] == 1
        await c.disconnect()
        t0 = time.monotonic()
        while mgr.status("piper")["requests_in_flight"]:
            assert time.monotonic() - t0 < 5, "the model's slot was not freed"
            await asyncio.sleep(0.05)
        return time.monotonic() - t0

    run(go())

    async def streamed() -> None:  # a text stream, with the next sentence already requested ahead
        c = await _client(mgr)
        await c.write_event(SynthesizeStart(voice=SynthesizeVoice(name="piper:joe")).event())
        await c.write_event(SynthesizeChunk(text=LONG[:1500] + " ").event())
        assert (await _read_until(c, "audio-chunk", "error"))[-1].type == "audio-chunk"
        await c.disconnect()
        t0 = time.monotonic()
        while mgr.status("piper")["requests_in_flight"] or mgr.status("piper")["queue_depth"]:
            assert time.monotonic() - t0 < 5, "a streamed request's slot was not freed"
            await asyncio.sleep(0.05)

    run(streamed())
    # the model works on for the next client
    async def again() -> list[Event]:
        c = await _client(mgr)
        await c.write_event(Synthesize(text="Still here.", voice=SynthesizeVoice(name="piper:joe")).event())
        ev = await _read_until(c, "audio-stop", "error")
        await c.disconnect()
        return ev

    assert run(again())[-1].type == "audio-stop"


def test_zeroconf_record_is_what_home_assistant_matches() -> None:
    from voxgate_manager.wyoming.server import SERVICE_TYPE, announce_address, service_info

    info = service_info("voxgate-box", "192.168.1.20", 10200)
    assert info.type == "_wyoming._tcp.local." == SERVICE_TYPE
    assert info.name == "voxgate-box._wyoming._tcp.local."
    assert info.port == 10200 and info.parsed_addresses() == ["192.168.1.20"]
    assert announce_address("127.0.0.1") == "127.0.0.1"
    assert announce_address("0.0.0.0", "10.0.0.5") == "10.0.0.5"


def test_manager_announces_wyoming_by_zeroconf_on_loopback(tmp_path: Path) -> None:
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    wport = free_port()
    name = f"voxgate-test-{wport}"
    m = ManagerProcess(tmp_path, [piper_process_model("piper")], env={
        "VOXGATE_WYOMING_PORT": str(wport), "VOXGATE_WYOMING_ZEROCONF": "1",
        "VOXGATE_WYOMING_ZEROCONF_NAME": name, "VOXGATE_WYOMING_ZEROCONF_HOST": "127.0.0.1"})

    async def look() -> AsyncServiceInfo:
        zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        try:
            found = AsyncServiceInfo("_wyoming._tcp.local.", f"{name}._wyoming._tcp.local.")
            for _ in range(10):
                if await found.async_request(zc.zeroconf, 1000):
                    return found
            raise AssertionError(f"no zeroconf answer for {name}\n{m.log()[-2000:]}")
        finally:
            await zc.async_close()

    try:
        found = run(look())
        assert found.port == wport and found.parsed_addresses() == ["127.0.0.1"]
    finally:
        m.stop()


def test_wyoming_allow_list_answers_others_with_an_error_event(tmp_path: Path) -> None:
    from voxgate_manager.wyoming.server import allowed, parse_allow

    nets = parse_allow("192.168.1.10, 10.0.0.0/8")
    assert allowed("192.168.1.10", nets) and allowed("10.2.3.4", nets) and allowed("::ffff:10.0.0.1", nets)
    assert not allowed("192.168.1.11", nets) and not allowed("127.0.0.1", nets) and allowed("127.0.0.1", [])
    with pytest.raises(ValueError, match="not-an-ip"):
        parse_allow("not-an-ip")
    wport = free_port()
    m = ManagerProcess(tmp_path, [piper_process_model("piper")],
                       env={"VOXGATE_WYOMING_PORT": str(wport), "VOXGATE_WYOMING_ALLOW": "10.0.0.0/8"})

    async def go() -> Event:
        c = AsyncTcpClient("127.0.0.1", wport)
        await c.connect()
        await c.write_event(Synthesize(text="Hello.").event())
        ev = await asyncio.wait_for(c.read_event(), 10)
        await c.disconnect()
        return ev

    try:
        ev = run(go())
        assert ev is not None and ev.type == "error" and Error.from_event(ev).code == "forbidden"
        assert m.metric("voxgate_manager_cold_starts_total") == 0
    finally:
        m.stop()


def test_shutdown_lets_speech_in_progress_finish(tmp_path: Path) -> None:
    import signal

    wport = free_port()
    m = ManagerProcess(tmp_path, [piper_process_model("piper")], env={"VOXGATE_WYOMING_PORT": str(wport)})

    async def go() -> tuple[list[Event], int]:
        c = AsyncTcpClient("127.0.0.1", wport)
        await c.connect()
        await c.write_event(Synthesize(text=HARVARD, voice=SynthesizeVoice(name="piper:joe")).event())
        first = await _read_until(c, "audio-chunk", "error")
        assert first[-1].type == "audio-chunk"
        code = await asyncio.to_thread(m.stop, signal.SIGTERM)  # returns once the manager exited
        rest = await _read_until(c, "audio-stop", "error")
        await c.disconnect()
        return first + rest, code

    try:
        events, code = run(go())
    finally:
        m.stop()
    assert code == 0 and events[-1].type == "audio-stop"
    assert len(_pcm(events)) > 3 * 24000  # the whole clip, not cut at the signal
