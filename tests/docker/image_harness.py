"""What the Docker tests share: skip or fail when the engine or an image is missing, and start an
image with its port on a free loopback port, returning once /health is 200.

With ``VOXGATE_TEST_DOCKER=1`` (CI) a missing engine, compose or image is a failure, not a skip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

CPU_IMAGE = os.environ.get("VOXGATE_CPU_IMAGE", "voxgate/tts-server:cpu")
REQUIRED = os.environ.get("VOXGATE_TEST_DOCKER") == "1"


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (VOXGATE_TEST_DOCKER=1: the Docker tests must run)")
    pytest.skip(reason)


@contextmanager
def docker_client(*images: str) -> Iterator[Any]:
    """A client of the local engine, which has ``images``."""
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ImportError:
        unavailable("the docker SDK is not installed")
    try:
        cli = docker.from_env(timeout=120)
        cli.ping()
    except DockerException as exc:
        unavailable(f"no Docker engine: {exc}")
    for image in images:
        try:
            cli.images.get(image)
        except ImageNotFound:
            unavailable(f"image {image} is missing: scripts/ci/docker-up.sh builds the images the tests use")
    try:
        yield cli
    finally:
        cli.close()


@dataclass
class Running:
    container: Any
    url: str
    seconds_to_http_ok: float


def logs(container: Any) -> str:
    return container.logs(tail=60).decode(errors="replace")


def start(client: Any, image: str, labels: dict[str, str], port: int = 8000, env: dict[str, str] | None = None,
          timeout: float = 180.0) -> Running:
    """Start ``image`` with the container port on a free loopback port; return once /health is 200."""
    started = time.monotonic()
    container = client.containers.run(
        image, detach=True, labels=labels, environment=env or {},
        ports={f"{port}/tcp": ("127.0.0.1", None)},  # the engine picks a free host port
    )
    try:
        container.reload()
        host_port = int(container.ports[f"{port}/tcp"][0]["HostPort"])
        url = f"http://127.0.0.1:{host_port}"
        deadline = started + timeout
        while time.monotonic() < deadline:
            container.reload()
            if container.status == "exited":
                raise AssertionError(f"container exited:\n{logs(container)}")
            try:
                if httpx.get(f"{url}/health", timeout=3).status_code == 200:
                    return Running(container, url, time.monotonic() - started)
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"/health not 200 within {timeout} s:\n{logs(container)}")
    except BaseException:
        container.remove(force=True)
        raise
