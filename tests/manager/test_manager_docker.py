"""The manager against a real Docker engine and the project's real CPU image (voxgate/tts-server:cpu).

CI sets VOXGATE_TEST_DOCKER=1: then a missing engine or image is a failure, never a skip. Every test
uses its own instance label and container name, and removes its containers at the end.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import threading
import time
import uuid

import httpx
import openai
import pytest

from audio_check import decode
from manager_harness import ManagerProcess, free_port, port_open, speech

IMAGE = os.environ.get("VOXGATE_CPU_IMAGE", "voxgate/tts-server:cpu")  # same variable as the image tests
REQUIRED = os.environ.get("VOXGATE_TEST_DOCKER") == "1"
LONG_TEXT = " ".join(f"This is sentence number {i} of a long passage read aloud by the speech server." for i in range(40))


def _docker_or_skip():
    why = None
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
        try:
            client.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            why = f"image {IMAGE} is not built (./build-tts-server.sh --target cpu --tag {IMAGE} ...)"
    except Exception as exc:  # no SDK, no engine
        why = f"Docker engine not reachable: {exc}"
    if why:
        if REQUIRED:
            pytest.fail(f"VOXGATE_TEST_DOCKER=1 but {why}")
        pytest.skip(why)
    return client


@pytest.fixture(scope="module")
def dclient():
    return _docker_or_skip()


@pytest.fixture
def instance(dclient):
    inst = f"test-{uuid.uuid4().hex[:10]}"
    yield inst
    for c in dclient.containers.list(all=True, filters={"label": f"io.voxgate.instance={inst}"}):
        c.remove(force=True)


@pytest.fixture
def mgr_factory(tmp_path, instance):
    started: list[ManagerProcess] = []

    def make(models, **kw) -> ManagerProcess:
        env = {"VOXGATE_MANAGER_INSTANCE": instance, **kw.pop("env", {})}
        m = ManagerProcess(tmp_path, models, env=env, **kw)
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


def docker_model(instance: str, model_id: str = "piper", **overrides):
    entry = {
        "id": model_id,
        "aliases": ["tts-1"],
        "upstream_model": "piper",
        "runtime": {
            "type": "docker",
            "image": IMAGE,
            "container_name": f"voxgate-{instance}-{model_id}",
            "port": free_port(),
            "container_port": 8000,
            "environment": {"VOXGATE_ENGINES": "piper", "VOXGATE_LOG_LEVEL": "warning"},
            "stop_timeout_s": 5,
        },
        "readiness": {"path": "/health", "json_field": "status", "json_value": "ok"},
        "start_timeout_s": 120,
        "hold_max_s": 120,
        "idle_timeout_s": 600,
        "drain_timeout_s": 20,
        "concurrency": 2,
        "park": False,  # idle stops here; test_manager_docker_park.py parks
    }
    entry.update(overrides)
    return entry


def container(dclient, instance: str, model_id: str = "piper"):
    return dclient.containers.get(f"voxgate-{instance}-{model_id}")


def test_first_request_creates_and_starts_the_container_via_openai_sdk(dclient, instance, mgr_factory):
    m = mgr_factory([docker_model(instance)])
    with pytest.raises(Exception):
        container(dclient, instance)  # nothing exists before the first request
    client = openai.OpenAI(base_url=f"{m.url}/v1", api_key="unused", max_retries=0, timeout=180)
    resp = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello from a container.", response_format="wav")
    audio = decode(resp.content, "wav")
    assert audio.duration > 0.5 and float((audio.samples**2).mean()) ** 0.5 > 0.01
    c = container(dclient, instance)
    assert c.status == "running"
    assert c.labels["io.voxgate.managed"] == "true" and c.labels["io.voxgate.model"] == "piper"
    st = m.status("piper")
    assert st["state"] == "ready" and st["runtime"]["container_id"] == c.id[:12]
    assert [e["from"] + ">" + e["to"] for e in m.events("state", "piper")][:2] == ["stopped>starting", "starting>ready"]
    assert m.metric("voxgate_manager_start_duration_seconds_count", model="piper", phase="container") == 1
    with client.audio.speech.with_streaming_response.create(model="piper", voice="alloy", input=LONG_TEXT[:500],
                                                            response_format="pcm") as s:
        assert decode(b"".join(s.iter_bytes()), "pcm").duration > 5


def test_twenty_concurrent_requests_one_start_twenty_successes(dclient, instance, mgr_factory):
    m = mgr_factory([docker_model(instance)])
    barrier = threading.Barrier(20)

    def one(i: int) -> httpx.Response:
        barrier.wait()
        return speech(m.url, "piper", f"Concurrent request {i}.", timeout=240)

    with cf.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert [r.status_code for r in results] == [200] * 20
    assert all(decode(r.content, "wav").duration > 0.3 for r in results)
    assert len(m.events("start", "piper")) == 1
    assert len(dclient.containers.list(all=True, filters={"label": f"io.voxgate.instance={instance}"})) == 1


def test_idle_stop_not_before_and_a_long_stream_is_not_cut(dclient, instance, mgr_factory):
    m = mgr_factory([docker_model(instance, idle_timeout_s=2)])
    assert speech(m.url).status_code == 200
    # A stream that outlasts the idle timeout at its source: 40 sentences take Piper several
    # seconds to make. (A slow reader alone does not hold a stream open: loopback socket buffers
    # take megabytes, so the manager can hand over the last byte long before the client reads it.)
    t0 = time.monotonic()
    chunks = []
    in_flight_seen = False
    with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=180,
                      json={"model": "piper", "input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw(4096):
            chunks.append(chunk)
            if time.monotonic() - t0 > 2.5 and not in_flight_seen:
                st = m.status("piper")
                assert st["state"] == "ready"
                in_flight_seen = st["requests_in_flight"] == 1
    assert in_flight_seen, "the stream must still be in flight past idle_timeout_s"
    assert decode(b"".join(chunks), "pcm").duration > 60
    ended = time.monotonic()
    # idle: not before idle_timeout_s (metrics and model listing do not count), then stopped
    while time.monotonic() - ended < 1.5:
        httpx.get(f"{m.url}/v1/models")
        httpx.get(f"{m.url}/metrics")
        assert m.status("piper")["state"] == "ready"
        time.sleep(0.2)
    m.wait_state("piper", "stopped", timeout=10)
    assert time.monotonic() - ended >= 2.0
    c = container(dclient, instance)
    assert c.status == "exited"  # kept for a fast restart, GPU given back
    port = m.status("piper")["runtime"]["base_url"].rsplit(":", 1)[1]
    assert not port_open(int(port))
    assert m.metric("voxgate_manager_idle_stops_total", model="piper") == 1
    # the next request restarts the same container
    assert speech(m.url).status_code == 200
    assert container(dclient, instance).id == c.id


def test_restarted_manager_adopts_the_running_container_and_removes_orphans(dclient, instance, mgr_factory):
    entry = docker_model(instance)
    m = mgr_factory([entry])
    assert speech(m.url).status_code == 200
    c = container(dclient, instance)
    started_at = c.attrs["State"]["StartedAt"]
    # an orphan (a model no longer in models.json) and a duplicate of ours, both labelled for this instance
    labels = {"io.voxgate.managed": "true", "io.voxgate.instance": instance}
    orphan = dclient.containers.create(IMAGE, name=f"voxgate-{instance}-gone", labels={**labels, "io.voxgate.model": "gone"})
    dup = dclient.containers.create(IMAGE, name=f"voxgate-{instance}-dup", labels={**labels, "io.voxgate.model": "piper",
                                                                                  "io.voxgate.runtime-hash": c.labels["io.voxgate.runtime-hash"]})
    assert m.stop() == 0
    assert container(dclient, instance).status == "running"  # the manager leaves it running
    m2 = mgr_factory([entry], port=m.port, admin_port=m.admin_port)
    st = m2.status("piper")
    assert st["state"] == "ready", st
    assert speech(m2.url).status_code == 200
    c.reload()
    assert c.attrs["State"]["StartedAt"] == started_at, "the adopted container was restarted"
    assert m2.events("adopted", "piper")[0]["ready"] is True
    assert m2.events("start", "piper") == []
    names = {x.name for x in dclient.containers.list(all=True, filters={"label": f"io.voxgate.instance={instance}"})}
    assert names == {c.name}
    for gone in (orphan, dup):
        with pytest.raises(Exception):
            gone.reload()


def test_container_killed_mid_request_clean_error_then_restart(dclient, instance, mgr_factory):
    m = mgr_factory([docker_model(instance)])
    assert speech(m.url).status_code == 200
    c = container(dclient, instance)
    error = None
    try:
        with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=60,
                          json={"model": "piper", "input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}) as r:
            assert r.status_code == 200
            for i, _ in enumerate(r.iter_raw()):
                if i == 0:
                    c.kill()
                time.sleep(0.01)
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        error = exc
    assert error is not None, "a killed container must not look like a complete response"
    m.wait_state("piper", "failed", timeout=10)
    st = m.status("piper")
    assert st["last_exit"]["exit_code"] == 137 and st["last_exit"]["reason"] in ("exit", "oom")
    assert m.metric("voxgate_manager_crashes_total", model="piper") == 1
    r = speech(m.url)
    assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
    assert len(m.events("start", "piper")) == 2
    assert container(dclient, instance).status == "running"


def test_oom_killed_container_is_reported_with_its_reason_and_code(dclient, instance, mgr_factory):
    # 60 MiB: the server starts, then loading its engine outgrows the cap and the kernel kills it
    entry = docker_model(instance, hold_max_s=90, retry_after_s=7)
    entry["runtime"]["mem_limit"] = "60m"
    m = mgr_factory([entry])
    r = speech(m.url)
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "OOM" in err["message"] and "137" in err["message"], err
    st = m.status("piper")
    assert st["state"] == "failed"
    assert st["last_exit"]["reason"] == "oom" and st["last_exit"]["exit_code"] == 137
    assert container(dclient, instance).attrs["HostConfig"]["Memory"] == 60 * 1024 * 1024
    oom = [e for e in m.events("exit", "piper") if e.get("reason") == "oom"]
    assert oom and oom[0]["exit_code"] == 137


def test_never_ready_gives_503_with_retry_after_within_hold_max(dclient, instance, mgr_factory):
    entry = docker_model(instance, hold_max_s=3, retry_after_s=9,
                         readiness={"path": "/health", "json_field": "status", "json_value": "never"})
    m = mgr_factory([entry])
    t0 = time.monotonic()
    r = speech(m.url)
    waited = time.monotonic() - t0
    assert r.status_code == 503 and r.headers["retry-after"] == "9"
    assert r.json()["error"]["code"] == "model_not_ready"
    assert 3.0 <= waited < 6.0


def test_port_and_name_conflicts_are_clear_errors(dclient, instance, mgr_factory):
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    stranger = dclient.containers.create(IMAGE, name=f"voxgate-{instance}-name", labels={"io.voxgate.instance": instance})
    try:
        port_entry = docker_model(instance, "port", aliases=[])
        port_entry["runtime"]["port"] = busy
        name_entry = docker_model(instance, "name", aliases=[])
        m = mgr_factory([port_entry, name_entry])
        r = speech(m.url, "port")
        assert r.status_code == 503 and f"port {busy}" in r.json()["error"]["message"]
        r = speech(m.url, "name")
        msg = r.json()["error"]["message"]
        assert r.status_code == 503 and f"voxgate-{instance}-name" in msg and "does not manage" in msg
        stranger.reload()  # untouched
    finally:
        blocker.close()


def test_reload_recreates_only_the_container_whose_entry_changed(dclient, instance, mgr_factory):
    a, b = docker_model(instance, "a", aliases=[]), docker_model(instance, "b", aliases=[])
    m = mgr_factory([a, b])
    assert speech(m.url, "a").status_code == 200 and speech(m.url, "b").status_code == 200
    ca, cb = container(dclient, instance, "a"), container(dclient, instance, "b")
    b2 = json.loads(json.dumps(b))
    b2["runtime"]["environment"]["VOXGATE_CHUNK_PAUSE_MS"] = "200"  # a runtime change: new container
    m.write_models([a, b2])
    r = httpx.post(f"{m.admin_url}/admin/reload", timeout=120)
    assert r.status_code == 200 and r.json()["changed"] == ["b"] and r.json()["unchanged"] == ["a"]
    ca.reload()
    assert ca.status == "running" and m.status("a")["state"] == "ready"  # untouched
    assert m.status("b")["state"] == "stopped"
    with pytest.raises(Exception):
        cb.reload()  # the stale container is gone, not left behind
    assert speech(m.url, "b").status_code == 200
    nb = container(dclient, instance, "b")
    assert nb.id != cb.id and "VOXGATE_CHUNK_PAUSE_MS=200" in nb.attrs["Config"]["Env"]
