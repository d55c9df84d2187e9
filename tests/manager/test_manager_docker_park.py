"""The manager's parked state with the docker runtime: the CPU image (voxgate/tts-server:cpu, or
VOXGATE_CPU_IMAGE) on the real Docker engine. Parking is an HTTP call to the server in the
container, so the same checks as the process runtime hold; the container keeps running while
parked and is stopped after parked_timeout_s."""

from __future__ import annotations

import park_checks
from test_manager_docker import container, dclient, docker_model, instance, mgr_factory  # noqa: F401 - fixtures


def parking_model(instance: str, **kw):  # noqa: F811 - the fixture's value
    entry = docker_model(instance, park=True, **kw)
    return entry, entry["runtime"]["port"]


def test_docker_idle_park_burst_one_wake_then_parked_timeout_stops_the_container(dclient, instance, mgr_factory):  # noqa: F811
    entry, port = parking_model(instance, idle_timeout_s=1, parked_timeout_s=4, concurrency=4)
    m = mgr_factory([entry])
    park_checks.check_idle_parks_and_a_burst_gives_one_wake(m, port)
    assert container(dclient, instance).status == "running"
    m.wait_state("piper", "parked", timeout=15)
    assert container(dclient, instance).status == "running"  # parked: the container runs on
    m.wait_state("piper", "stopped", timeout=20)
    c = container(dclient, instance)
    c.reload()
    assert c.status == "exited"
    assert m.metric("voxgate_manager_stops_total", model="piper", reason="parked_timeout") == 1


def test_docker_admin_park_wake_and_during_traffic(dclient, instance, mgr_factory):  # noqa: F811
    entry, port = parking_model(instance, concurrency=3)
    m = mgr_factory([entry])
    park_checks.check_admin_park_and_wake(m, port)
    park_checks.check_park_and_wake_during_traffic_lose_nothing(m)
