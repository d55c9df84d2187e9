"""compose.yaml and models.gpu.json, the GPU host's set-up: compose validates the file, the models
file is what the docs say (the GPU model backs tts-1 and tts-1-hd, Piper is the CPU companion), the
systemd unit parses, and, with the CPU image standing in for the GPU one, ``compose up`` serves
speech through the manager and ``compose down`` leaves no container (the manager removes the model's
container on exit: VOXGATE_MANAGER_REMOVE_ON_EXIT=1 in compose.yaml) and no network; of volumes only
the named ones meant to persist (voxgate-state, voxgate-hf, voxgate-voices, voxgate-compile-cache).

With ``VOXGATE_TEST_DOCKER=1`` (CI) a missing engine, compose or image is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from audio_check import decode
from image_harness import CPU_IMAGE, docker_client, unavailable
from ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MANAGER_IMAGE = os.environ.get("VOXGATE_MANAGER_IMAGE", "voxgate/manager:test")


def compose_cmd() -> list[str]:
    """``docker compose`` (the plugin) or ``docker-compose`` (Debian's package), whichever exists."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    unavailable("neither `docker compose` nor `docker-compose` is installed (scripts/ci/docker-up.sh installs it)")
    raise AssertionError


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_compose_config_validates() -> None:
    cmd = compose_cmd()
    for profile in ([], ["--profile", "prefetch"], ["--profile", "build"]):
        r = run(cmd + ["-f", "compose.yaml", *profile, "config"])
        assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(run(cmd + ["-f", "compose.yaml", "--profile", "prefetch", "config"]).stdout)
    mgr = cfg["services"]["manager"]
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in mgr["volumes"]]
    assert any(m.startswith("/var/run/docker.sock:/var/run/docker.sock") for m in mounts)
    assert any("models.gpu.json:/etc/voxgate/models.json" in m for m in mounts)
    assert mgr["network_mode"] == "host"
    assert mgr["environment"]["VOXGATE_WYOMING_HOST"] == "127.0.0.1"  # no auth: loopback unless configured
    prefetch = cfg["services"]["prefetch"]
    assert any(str(v).startswith("voxgate-hf:/data/hf") or (isinstance(v, dict) and v.get("source") == "voxgate-hf")
               for v in prefetch["volumes"])
    assert cfg["volumes"]["voxgate-hf"]["name"] == "voxgate-hf"  # the name the model's container mounts


def test_models_gpu_json_puts_the_gpu_model_behind_tts_1() -> None:
    from voxgate_manager.config import DockerRuntime, ProcessRuntime, load_models

    models = load_models(ROOT / "models.gpu.json")
    gpu = models.resolve("tts-1")
    assert gpu is not None and gpu is models.resolve("tts-1-hd") and gpu is models.resolve(None)
    assert isinstance(gpu.runtime, DockerRuntime) and gpu.runtime.gpus is not None
    assert any(v.source == "voxgate-hf" and v.target == "/data/hf" for v in gpu.runtime.volumes)
    # the image's compile caches (TRITON_CACHE_DIR etc. under /data/compile-cache) outlive the container
    assert any(v.source == "voxgate-compile-cache" and v.target == "/data/compile-cache" for v in gpu.runtime.volumes)
    piper = models.resolve("piper")
    assert piper is not None and isinstance(piper.runtime, ProcessRuntime) and piper.runtime.environment["VOXGATE_ENGINES"] == "piper"


def test_systemd_unit_parses() -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    r = run(["systemd-analyze", "verify", str(ROOT / "deploy" / "voxgate-manager.service")])
    problems = [ln for ln in (r.stderr + r.stdout).splitlines()
                if ln.strip() and "is not executable" not in ln and "No such file" not in ln]
    assert not problems, problems


@pytest.fixture
def cli():
    with docker_client(CPU_IMAGE, MANAGER_IMAGE) as client:
        yield client


def test_compose_up_serves_speech_through_the_manager_and_down_leaves_nothing(tmp_path: Path, cli) -> None:
    cmd = compose_cmd()
    instance = f"compose-test-{tmp_path.name}"
    port, admin, model_port = free_port(), free_port(), free_port()
    models = {"default_model": "cpu", "models": [{
        "id": "cpu", "aliases": ["tts-1"], "upstream_model": "piper",
        "runtime": {"type": "docker", "image": CPU_IMAGE, "port": model_port, "container_name": f"voxgate-{instance}",
                    "stop_timeout_s": 5},
        "readiness": {"json_field": "status", "json_value": "ok"}, "start_timeout_s": 120, "hold_max_s": 120}]}
    models_file = tmp_path / "models.json"
    models_file.write_text(json.dumps(models))
    env = {"VOXGATE_MANAGER_IMAGE": MANAGER_IMAGE, "VOXGATE_MODELS_FILE": str(models_file), "VOXGATE_MANAGER_HOST": "127.0.0.1",
           "VOXGATE_MANAGER_PORT": str(port), "VOXGATE_MANAGER_ADMIN_PORT": str(admin), "VOXGATE_WYOMING_PORT": "0",
           "VOXGATE_MANAGER_INSTANCE": instance}  # STOP/REMOVE_ON_EXIT: compose.yaml's defaults
    project = ["-p", instance.replace("_", "-").lower(), "-f", "compose.yaml"]
    volumes_before = {v.name for v in cli.volumes.list()}
    anonymous: list[str] = []
    up = run(cmd + project + ["up", "-d", "--no-build", "manager"], env, timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, run(cmd + project + ["logs"], env).stdout[-3000:]
            time.sleep(0.5)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/audio/speech", timeout=150,
                       json={"model": "tts-1", "input": "Hello from compose.", "voice": "alloy"})
        assert r.status_code == 200, r.text
        assert decode(r.content, "mp3").duration > 0.5
        ran = cli.containers.list(filters={"label": f"io.voxgate.instance={instance}"})
        assert ran  # the model ran in docker
        # the image's VOLUMEs (/data/hf, /voices) that this set-up does not mount: anonymous volumes
        anonymous = [mt["Name"] for c in ran for mt in c.attrs["Mounts"] if mt.get("Type") == "volume"]
    finally:
        # no -v: it would also remove voxgate-hf and voxgate-voices, which are shared by name and meant
        # to persist (the weights cache and the cloned voices); voxgate-state (the catalog cache) is
        # kept by `down` too, as compose keeps every volume without -v, and removed below by the test
        down = run(cmd + project + ["down"], env, timeout=240)
        left = cli.containers.list(all=True, filters={"label": f"io.voxgate.instance={instance}"})
        networks = [n.name for n in cli.networks.list(filters={"label": f"com.docker.compose.project={project[1]}"})]
        made = [v for v in cli.volumes.list(filters={"label": f"com.docker.compose.project={project[1]}"})
                if v.name not in volumes_before]
        kept = sorted(v.name for v in made)
        for c in left:  # clean up after a failure, so the next run starts clean
            c.remove(force=True, v=True)
        for vol in made:
            vol.remove(force=True)
    assert down.returncode == 0, down.stderr
    # VOXGATE_MANAGER_REMOVE_ON_EXIT=1 (compose.yaml): the manager removed its model's container itself
    assert not left, f"model containers left after down: {[(c.name, c.status) for c in left]}"
    assert not cli.containers.list(all=True, filters={"label": f"com.docker.compose.project={project[1]}"})
    assert anonymous and not [v for v in anonymous if v in {x.name for x in cli.volumes.list()}]  # removed with it
    assert not networks, networks  # host networking: compose makes no network of its own
    # what this `up` made and `down` kept, by design: the state, and compose's named volumes (made by
    # `up` when missing even though only the prefetch service and the model's entry mount them)
    assert kept == sorted({f"{project[1]}_voxgate-state", "voxgate-hf", "voxgate-voices",
                           "voxgate-compile-cache"} - volumes_before), kept
