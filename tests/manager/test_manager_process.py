"""The manager end to end with the process runtime: a real voxgate-server (Piper) started on demand."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import threading
import time

import httpx
import openai
import pytest

from audio_check import decode
from manager_harness import ManagerProcess, piper_process_model, port_open, speech
from ports import free_port

LONG_TEXT = " ".join(f"This is sentence number {i} of a long passage read aloud by the speech server." for i in range(40))




def test_first_request_starts_the_model_and_returns_speech(mgr_factory):
    m = mgr_factory([piper_process_model()])
    assert m.status("piper")["state"] == "stopped"
    v = httpx.get(f"{m.url}/v1/audio/voices", params={"model": "piper"})
    assert v.status_code == 200 and v.json()["voices"] == [] and v.headers["x-voxgate-model-state"] == "stopped"
    assert m.status("piper")["state"] == "stopped"  # listing voices never starts a model
    r = speech(m.url, "piper-alias")
    assert r.status_code == 200, r.text
    audio = decode(r.content, "wav")
    assert audio.duration > 0.5 and float((audio.samples**2).mean()) ** 0.5 > 0.01
    assert m.status("piper")["state"] == "ready"
    voices = httpx.get(f"{m.url}/v1/audio/voices", params={"model": "piper"}).json()["voices"]
    assert any(x["id"] == "joe" for x in voices)  # the model's own answer once it runs
    assert m.metric("voxgate_manager_cold_starts_total", model="piper") == 1
    assert m.metric("voxgate_manager_start_duration_seconds_count", model="piper", phase="readiness") == 1
    states = [(e["from"], e["to"]) for e in m.events("state", "piper")]
    assert states[:2] == [("stopped", "starting"), ("starting", "ready")]


def test_twenty_concurrent_requests_to_a_stopped_model_one_start_twenty_successes(mgr_factory):
    m = mgr_factory([piper_process_model()])
    barrier = threading.Barrier(20)

    def one(i: int) -> httpx.Response:
        barrier.wait()
        return speech(m.url, "piper", f"Request number {i}.")

    with cf.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert [r.status_code for r in results] == [200] * 20
    for r in results:
        assert decode(r.content, "wav").duration > 0.3
    assert len(m.events("start", "piper")) == 1
    assert m.metric("voxgate_manager_cold_starts_total", model="piper") == 1


def test_idle_stop_after_idle_timeout_and_not_before(mgr_factory):
    m = mgr_factory([piper_process_model(idle_timeout_s=3)])
    port = json.loads(m.config.read_text())["models"][0]["runtime"]["port"]
    assert speech(m.url).status_code == 200
    ended = time.monotonic()
    st = m.status("piper")
    assert st["state"] == "ready" and st["requests_in_flight"] == 0 and 0 < st["idle_deadline_s"] <= 3
    # /v1/models, /health, voice listing and metrics neither keep it alive nor restart it
    while time.monotonic() - ended < 2.5:
        httpx.get(f"{m.url}/v1/models")
        httpx.get(f"{m.url}/health")
        httpx.get(f"{m.url}/v1/audio/voices")
        httpx.get(f"{m.url}/metrics")
        assert m.status("piper")["state"] == "ready", "stopped before idle_timeout_s"
        time.sleep(0.2)
    m.wait_state("piper", "stopped", timeout=3.5)
    assert time.monotonic() - ended >= 3.0
    assert not port_open(port), "the server process still listens after the idle stop"
    assert m.metric("voxgate_manager_idle_stops_total", model="piper") == 1
    for _ in range(3):
        httpx.get(f"{m.url}/v1/models")
        httpx.get(f"{m.url}/v1/audio/voices")
    time.sleep(0.5)
    assert m.status("piper")["state"] == "stopped"
    assert m.metric("voxgate_manager_cold_starts_total", model="piper") == 1


def test_stream_outlasting_idle_timeout_is_not_cut(mgr_factory):
    m = mgr_factory([piper_process_model(idle_timeout_s=1)])
    assert speech(m.url).status_code == 200  # warm
    chunks: list[bytes] = []
    t0 = time.monotonic()
    saw_in_flight_after_idle = False
    with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=120,
                      json={"model": "piper", "input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}) as r:
        assert r.status_code == 200
        assert r.headers.get("x-accel-buffering") == "no"
        for chunk in r.iter_raw(4096):
            chunks.append(chunk)
            if time.monotonic() - t0 > 1.5 and not saw_in_flight_after_idle:
                st = m.status("piper")
                assert st["state"] == "ready"
                saw_in_flight_after_idle = st["requests_in_flight"] == 1
            if time.monotonic() - t0 < 2.5:
                time.sleep(0.02)  # a slow listener, past the idle timeout
    elapsed = time.monotonic() - t0
    assert elapsed > 1.5, "the stream must outlast idle_timeout_s for this test to mean anything"
    assert saw_in_flight_after_idle, "the stream was not counted in flight past the idle timeout"
    audio = decode(b"".join(chunks), "pcm")
    assert audio.duration > 60  # 40 sentences, complete
    assert len(chunks) > 4
    assert m.metric("voxgate_manager_idle_stops_total", model="piper") == 0
    m.wait_state("piper", "stopped", timeout=3)


def test_sse_is_relayed_event_by_event(mgr_factory):
    m = mgr_factory([piper_process_model()])
    assert speech(m.url).status_code == 200  # started: time the stream alone
    events = []
    t0 = time.monotonic()
    first = None
    with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=120,
                      json={"model": "piper", "input": LONG_TEXT[:1200], "voice": "alloy", "stream_format": "sse"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                first = first or time.monotonic() - t0
                events.append(json.loads(line[6:]))
    total = time.monotonic() - t0
    kinds = [e["type"] for e in events]
    assert kinds.count("speech.audio.delta") >= 2 and kinds[-1] == "speech.audio.done"
    # relayed as produced, not buffered whole: the first event arrives long before the last
    assert first is not None and first < total / 2, (first, total)


def test_process_killed_mid_request_gives_clean_error_and_next_request_restarts(mgr_factory):
    m = mgr_factory([piper_process_model()])
    assert speech(m.url).status_code == 200
    pid = m.status("piper")["runtime"]["pid"]
    error = None
    try:
        with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=60,
                          json={"model": "piper", "input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}) as r:
            assert r.status_code == 200
            for i, _ in enumerate(r.iter_raw()):
                if i == 0:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        error = repr(exc)
    assert error is not None, "a killed model must not look like a complete response"
    m.wait_state("piper", "failed", timeout=5)
    st = m.status("piper")
    assert st["last_exit"]["exit_code"] == -signal.SIGKILL
    assert m.metric("voxgate_manager_crashes_total", model="piper", reason="exit") == 1
    r = speech(m.url)
    assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
    assert len(m.events("start", "piper")) == 2


def test_model_that_never_becomes_ready_gets_503_with_retry_after_within_hold_max(mgr_factory):
    entry = piper_process_model(hold_max_s=2, start_timeout_s=60, retry_after_s=7,
                                readiness={"path": "/health", "json_field": "status", "json_value": "never"})
    m = mgr_factory([entry])
    t0 = time.monotonic()
    r = speech(m.url)
    waited = time.monotonic() - t0
    assert r.status_code == 503
    assert r.headers["retry-after"] == "7"
    body = r.json()["error"]
    assert body["code"] == "model_not_ready" and "hold_max_s" in body["message"]
    assert 2.0 <= waited < 4.0
    assert m.status("piper")["state"] == "starting"


def test_start_failure_is_a_clear_error_naming_the_port(mgr_factory):
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        m = mgr_factory([piper_process_model(port=port)])
        r = speech(m.url)
        assert r.status_code == 503
        err = r.json()["error"]
        assert err["code"] == "start_failed" and f"port {port}" in err["message"] and "in use" in err["message"]
        assert "retry-after" in r.headers
        assert m.status("piper")["state"] == "failed"
    finally:
        blocker.close()


def test_openai_sdk_works_unchanged_through_the_manager(mgr_factory):
    m = mgr_factory([piper_process_model(aliases=["tts-1"])], env={"VOXGATE_API_KEYS": "sk-test-1,sk-test-2"})
    client = openai.OpenAI(base_url=f"{m.url}/v1", api_key="sk-test-2", max_retries=0, timeout=120)
    resp = client.audio.speech.create(model="tts-1", voice="alloy", input="The OpenAI SDK, unchanged.", response_format="mp3")
    assert decode(resp.content, "mp3").duration > 0.5
    with client.audio.speech.with_streaming_response.create(model="piper", voice="alloy", input=LONG_TEXT[:400],
                                                            response_format="pcm") as s:
        data = b"".join(s.iter_bytes())
    assert decode(data, "pcm").duration > 3
    ids = [m_.id for m_ in client.models.list().data]
    assert ids == ["piper", "tts-1"]  # aliases are listed too: OpenAI clients look tts-1 up there
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{m.url}/v1", api_key="wrong", max_retries=0).audio.speech.create(
            model="tts-1", voice="alloy", input="x")
    with pytest.raises(openai.NotFoundError) as exc:
        client.audio.speech.create(model="no-such-model", voice="alloy", input="x")
    assert exc.value.body["code"] == "model_not_found"


def test_admin_load_unload_drains_and_status(mgr_factory):
    m = mgr_factory([piper_process_model()])
    r = httpx.post(f"{m.admin_url}/admin/models/piper/load", timeout=120)
    assert r.status_code == 200 and r.json()["state"] == "ready"
    assert r.json()["idle_deadline_s"] > 500
    # unload while a stream is in flight: the stream completes, then the model stops
    result: dict[str, object] = {}

    def stream() -> None:
        with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=120,
                          json={"model": "piper", "input": LONG_TEXT[:1600], "voice": "alloy", "response_format": "pcm"}) as resp:
            data = b""
            for c in resp.iter_raw():
                data += c
            result["bytes"] = data

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.monotonic() + 30
    while m.status("piper")["requests_in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    u = httpx.post(f"{m.admin_url}/admin/models/piper/unload", timeout=120)
    t.join(60)
    assert u.status_code == 200 and u.json()["state"] == "stopped"
    assert decode(result["bytes"], "pcm").duration > 30  # not cut by the unload
    assert m.metric("voxgate_manager_stops_total", model="piper", reason="unload") == 1


def test_cli_status_load_unload(mgr_factory):
    import subprocess
    import sys

    from manager_harness import PYTHONPATH

    m = mgr_factory([piper_process_model()])
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "voxgate_manager.cli", *args, "--admin-url", m.admin_url],
                              env=env, capture_output=True, text=True, timeout=120)

    out = cli("load", "piper")
    assert out.returncode == 0 and "ready" in out.stdout
    out = cli("status")
    assert out.returncode == 0 and "piper" in out.stdout and "ready" in out.stdout
    out = cli("unload", "piper")
    assert out.returncode == 0 and "stopped" in out.stdout
    out = cli("unload", "nope")
    assert out.returncode == 1 and "does not exist" in out.stderr


def test_reload_restarts_only_changed_models(mgr_factory):
    a, b = piper_process_model("a"), piper_process_model("b")
    m = mgr_factory([a, b])
    assert speech(m.url, "a").status_code == 200
    assert speech(m.url, "b").status_code == 200
    pid_a, pid_b = m.status("a")["runtime"]["pid"], m.status("b")["runtime"]["pid"]
    b2 = dict(b, idle_timeout_s=300)
    m.write_models([a, b2])
    r = httpx.post(f"{m.admin_url}/admin/reload", timeout=60)
    assert r.status_code == 200
    assert r.json() == {"added": [], "removed": [], "changed": ["b"], "unchanged": ["a"]}
    assert m.status("a")["state"] == "ready" and m.status("a")["runtime"]["pid"] == pid_a
    assert m.status("b")["state"] == "stopped"
    assert speech(m.url, "b").status_code == 200
    assert m.status("b")["runtime"]["pid"] != pid_b and m.status("b")["idle_timeout_s"] == 300
    # a bad file is refused with the field named; the running set is untouched
    m.write_models({"models": [dict(a, concurrency=0)]})
    r = httpx.post(f"{m.admin_url}/admin/reload", timeout=60)
    assert r.status_code == 400 and "models[0].concurrency" in r.json()["error"]["message"]
    assert m.status("a")["state"] == "ready"


def test_bad_models_json_stops_the_manager_naming_the_field(tmp_path):
    entry = piper_process_model()
    entry["runtime"]["port"] = "eighty"
    with pytest.raises(RuntimeError) as exc:
        ManagerProcess(tmp_path, [entry])
    assert "exited with 2" in str(exc.value) and "models[0].runtime.port" in str(exc.value)


def test_non_loopback_without_key_warns_loudly(mgr_factory):
    m = mgr_factory([piper_process_model()], host="0.0.0.0")
    assert "NO API KEY" in m.log()


def test_remote_model_is_routed_only_while_its_health_check_passes(mgr_factory, tmp_path):
    import subprocess
    import sys

    from manager_harness import PYTHONPATH, free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "VOXGATE_LOG_LEVEL": "warning"}

    def serve() -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", "voxgate_server.cli", "--host", "127.0.0.1", "--port", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return p
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        p.kill()
        raise RuntimeError("voxgate-server did not come up")

    lan = serve()
    try:
        entry = {"id": "lan", "upstream_model": "piper", "hold_max_s": 2, "retry_after_s": 4,
                 "runtime": {"type": "remote", "base_url": f"http://127.0.0.1:{port}", "health_interval_s": 0.3},
                 "readiness": {"json_field": "status", "json_value": "ok"}}
        m = mgr_factory([entry])
        r = speech(m.url, "lan")
        assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
        lan.terminate()
        lan.wait(20)
        m.wait_state("lan", "failed", timeout=5)
        assert m.metric("voxgate_manager_crashes_total", model="lan", reason="health") == 1
        r = speech(m.url, "lan")
        assert r.status_code == 503 and r.headers["retry-after"] == "4"
        lan = serve()
        r = speech(m.url, "lan")
        assert r.status_code == 200
        assert m.status("lan")["state"] == "ready"
    finally:
        lan.terminate()
        lan.wait(20)


def test_remote_model_over_https_is_trusted_through_ssl_cert_file_and_only_then(tmp_path):
    """A LAN voxgate-server serving HTTPS with a certificate from the household's own CA: the
    manager reaches it (probes over httpx, speech over its own client) once SSL_CERT_FILE names
    that CA, and refuses it without (the certificate really is verified)."""
    import ssl
    import subprocess
    import sys

    import trustme

    from manager_harness import PYTHONPATH

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_pem, key_pem, chain_pem = tmp_path / "ca.pem", tmp_path / "key.pem", tmp_path / "chain.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    cert.cert_chain_pems[0].write_to_path(str(chain_pem))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(chain_pem), append=True)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "VOXGATE_LOG_LEVEL": "warning",
           "VOXGATE_SSL_CERTFILE": str(chain_pem), "VOXGATE_SSL_KEYFILE": str(key_pem)}
    lan = subprocess.Popen([sys.executable, "-m", "voxgate_server.cli", "--host", "127.0.0.1", "--port", str(port)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    managers: list[ManagerProcess] = []
    try:
        trust = ssl.create_default_context()
        ca.configure_trust(trust)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"https://127.0.0.1:{port}/health", verify=trust, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "voxgate-server over HTTPS did not come up"
            time.sleep(0.1)
        entry = {"id": "lan", "upstream_model": "piper", "hold_max_s": 3, "retry_after_s": 4,
                 "runtime": {"type": "remote", "base_url": f"https://127.0.0.1:{port}", "health_interval_s": 0.3},
                 "readiness": {"json_field": "status", "json_value": "ok"}}
        (tmp_path / "trusting").mkdir()
        (tmp_path / "plain").mkdir()
        trusting = ManagerProcess(tmp_path / "trusting", [entry], env={"SSL_CERT_FILE": str(ca_pem)})
        managers.append(trusting)
        r = speech(trusting.url, "lan")
        assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
        voices = httpx.get(f"{trusting.url}/v1/audio/voices", params={"model": "lan"}, timeout=30)
        assert voices.status_code == 200 and voices.json()
        assert trusting.status("lan")["state"] == "ready"
        plain = ManagerProcess(tmp_path / "plain", [entry], env={"SSL_CERT_FILE": ""})
        managers.append(plain)
        r = speech(plain.url, "lan")
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready"
    finally:
        for m in managers:
            m.stop()
        lan.terminate()
        lan.wait(20)


def test_vram_budget_stops_the_idle_model_to_make_room(mgr_factory):
    a = piper_process_model("a", vram_mb=600)
    b = piper_process_model("b", vram_mb=600)
    c = piper_process_model("c")  # no vram_mb: never counted
    m = mgr_factory([a, b, c], env={"VOXGATE_MANAGER_VRAM_BUDGET_MB": "1000"})
    assert speech(m.url, "a").status_code == 200
    assert speech(m.url, "c").status_code == 200
    assert speech(m.url, "b").status_code == 200  # a (idle, least recently used with vram) makes room
    assert m.status("a")["state"] == "stopped"
    assert m.status("b")["state"] == "ready" and m.status("c")["state"] == "ready"
    assert m.metric("voxgate_manager_stops_total", model="a", reason="vram") == 1
    assert m.events("vram_evict", "a")[0]["for_model"] == "b"


def test_warmup_runs_before_the_first_request_is_released_and_a_failing_one_fails_the_start(mgr_factory):
    good = piper_process_model("good", warmup={"body": {"model": "piper", "input": "Warming up.", "voice": "alloy"}})
    bad = piper_process_model("bad", warmup={"body": {"model": "piper", "input": "", "voice": "alloy"}})
    m = mgr_factory([good, bad])
    assert speech(m.url, "good").status_code == 200
    ready = m.events("ready", "good")[0]
    assert ready["warmup_s"] > 0 and ready["total_s"] >= ready["readiness_s"] + ready["warmup_s"]
    assert m.metric("voxgate_manager_start_duration_seconds_count", model="good", phase="warmup") == 1
    r = speech(m.url, "bad")
    assert r.status_code == 503
    assert "warm-up request POST /v1/audio/speech answered 400" in r.json()["error"]["message"]
    assert m.status("bad")["state"] == "failed"


def test_held_client_that_goes_away_leaves_the_queue_and_the_start_goes_on(mgr_factory):
    entry = piper_process_model(hold_max_s=60, readiness={"path": "/health", "json_field": "status", "json_value": "never"})
    m = mgr_factory([entry])
    with pytest.raises(httpx.ReadTimeout):
        speech(m.url, timeout=1.5)
    assert m.status("piper")["queue_depth"] in (0, 1)
    deadline = time.monotonic() + 5
    while m.status("piper")["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.1)
    st = m.status("piper")
    assert st["queue_depth"] == 0, "a client that left still holds a place in the queue"
    assert st["state"] == "starting"  # the start it triggered is not abandoned half-way


def test_client_leaving_mid_stream_frees_the_model_without_waiting_for_the_stream_end(mgr_factory):
    m = mgr_factory([piper_process_model()])
    assert speech(m.url).status_code == 200  # started
    with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=120,
                      json={"model": "piper", "input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}) as r:
        assert r.status_code == 200
        chunks = r.iter_raw()
        next(chunks)
        time.sleep(0.2)
        assert m.status("piper")["requests_in_flight"] == 1  # the answer goes on while the client holds on
    left = time.monotonic()  # the client closed its connection with most of 60+ s of audio still to come
    while m.status("piper")["requests_in_flight"] and time.monotonic() - left < 10:
        time.sleep(0.02)
    freed_after = time.monotonic() - left
    assert m.status("piper")["requests_in_flight"] == 0
    # synthesising the rest takes seconds on this machine; a proxy that relayed it to nobody would hold the slot as long
    assert freed_after < 1.0, freed_after
    assert speech(m.url).status_code == 200  # and the model serves the next request


def test_voice_clip_upload_through_the_manager_ignoring_proxy_env_vars(mgr_factory, tmp_path):
    # model servers are local: an HTTP(S) proxy set for the internet must not be used to reach them
    dead = f"http://127.0.0.1:{free_port()}"
    proxy_env = {k: dead for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")}
    proxy_env.update(NO_PROXY="", no_proxy="")
    entry = piper_process_model()
    entry["runtime"]["environment"]["VOXGATE_VOICES_DIR"] = str(tmp_path / "voices")
    m = mgr_factory([entry], env=proxy_env)
    clip = speech(m.url, text=LONG_TEXT[:700]).content  # a real clip, large enough to fill socket buffers
    assert len(clip) > 600_000 and decode(clip, "wav").duration > 5
    r = httpx.post(f"{m.url}/v1/audio/voices", params={"model": "piper"}, timeout=60,
                   files={"file": ("narrator.wav", clip, "audio/wav")}, data={"name": "narrator"})
    assert r.status_code == 201, r.text
    assert r.headers["x-voxgate-model"] == "piper"
    voice_id = r.json()["id"]
    got = httpx.get(f"{m.url}/v1/audio/voices/{voice_id}", params={"model": "piper", "download": "1"}, timeout=60)
    assert got.status_code == 200 and got.content == clip
    d = httpx.delete(f"{m.url}/v1/audio/voices/{voice_id}", params={"model": "piper"}, timeout=60)
    assert d.status_code == 200 and d.json()["deleted"] is True


def test_upstream_gone_between_health_checks_gives_502_in_openai_envelope(mgr_factory):
    import subprocess
    import sys

    from manager_harness import PYTHONPATH

    port = free_port()
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "VOXGATE_LOG_LEVEL": "warning"}
    lan = subprocess.Popen([sys.executable, "-m", "voxgate_server.cli", "--host", "127.0.0.1", "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        entry = {"id": "lan", "upstream_model": "piper",
                 "runtime": {"type": "remote", "base_url": f"http://127.0.0.1:{port}", "health_interval_s": 600},
                 "readiness": {"json_field": "status", "json_value": "ok"}}
        m = mgr_factory([entry])
        assert speech(m.url, "lan").status_code == 200  # a kept-alive connection to it is now pooled
        lan.terminate()
        lan.wait(20)
        r = speech(m.url, "lan")  # the next health check is minutes away: the manager still routes to it
        assert r.status_code == 502
        err = r.json()["error"]
        assert err["code"] == "upstream_unreachable" and err["type"] == "server_error" and "lan" in err["message"]
        assert m.metric("voxgate_manager_requests_total", model="lan", outcome="error") == 1
        assert m.status("lan")["requests_in_flight"] == 0
    finally:
        lan.kill()
        lan.wait(20)
