"""Start-up of the CPU image against the same server started as a plain process, in one run.

Per run it measures seconds from start to ``GET /health`` = 200 (engines loaded), the wall time
of a first ``POST /v1/audio/speech`` (wav, one sentence), and, for the container, seconds until
Docker's HEALTHCHECK reports ``healthy`` (bounded below by the check's 10 s interval). The
baseline is ``voxgate-server`` started from this Python with the same settings, so the
container's own cost (engine start-up, namespaces, port proxy) can be read off against it.

    python bench/service/image_bench.py --runs 3 --out bench/results/image_bench.json

Needs a Docker engine and the image (``scripts/ci/docker-up.sh``), and voxgate-server[piper]
importable here (it puts tts-inference-server/ on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.common.report import write_report
from bench.common.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "The birch canoe slid on the smooth planks."


def _wait_http_ok(url: str, started: float, timeout: float, alive) -> float:
    deadline = started + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("server exited before /health was 200")
        try:
            if httpx.get(f"{url}/health", timeout=3).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"/health not 200 within {timeout} s")


def _speech_seconds(url: str) -> float:
    start = time.monotonic()
    r = httpx.post(f"{url}/v1/audio/speech", timeout=120,
                   json={"model": "tts-1", "voice": "alloy", "input": SENTENCE, "response_format": "wav"})
    r.raise_for_status()
    assert len(r.content) > 10_000, "no audio"
    return time.monotonic() - start


def container_run(client: docker.DockerClient, image: str, timeout: float) -> dict[str, float]:
    started = time.monotonic()
    c = client.containers.run(image, detach=True, ports={"8000/tcp": ("127.0.0.1", None)},
                              labels={"voxgate.bench": "image_bench"})
    try:
        c.reload()
        url = f"http://127.0.0.1:{c.ports['8000/tcp'][0]['HostPort']}"

        def alive() -> bool:
            c.reload()
            return c.status != "exited"

        http_ok = _wait_http_ok(url, started, timeout, alive)
        speech = _speech_seconds(url)
        while time.monotonic() < started + timeout:
            c.reload()
            if c.attrs["State"]["Health"]["Status"] == "healthy":
                break
            time.sleep(0.1)
        healthy = time.monotonic() - started
        return {"to_http_ok_s": http_ok, "first_speech_s": speech, "to_healthy_s": healthy}
    finally:
        c.remove(force=True)


def process_run(timeout: float) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tts-inference-server"), "VOXGATE_LOG_LEVEL": "warning",
           "VOXGATE_ENGINES": "piper"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "voxgate_server.cli", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        http_ok = _wait_http_ok(url, started, timeout, lambda: proc.poll() is None)
        return {"to_http_ok_s": http_ok, "first_speech_s": _speech_seconds(url)}
    finally:
        stop_process(proc, 10)


def summary(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {key: {"median": statistics.median(r[key] for r in runs), "min": min(r[key] for r in runs),
                  "max": max(r[key] for r in runs)} for key in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", default="voxgate/tts-server:cpu")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    client = docker.from_env()
    image = client.images.get(args.image)
    container, process = [], []
    for _ in range(args.runs):  # interleaved, so both see the same machine load
        container.append(container_run(client, args.image, args.timeout))
        process.append(process_run(args.timeout))
    result = {
        "bench": "image_bench",
        "image": args.image,
        "image_id": image.id,
        "image_size_bytes": image.attrs["Size"],
        "healthcheck": image.attrs["Config"]["Healthcheck"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "docker": client.version()["Version"], "loadavg_at_start": os.getloadavg()},
        "runs": args.runs,
        "container": {"summary": summary(container), "runs": container},
        "process_baseline": {"summary": summary(process), "runs": process},
    }
    write_report(result, args.out)


if __name__ == "__main__":
    main()
