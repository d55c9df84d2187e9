"""What the manager leaves of its docker models when it exits, on the real Docker engine and CPU
image: with VOXGATE_MANAGER_STOP_ON_EXIT=1 the model's container is stopped and kept (the next
start is a cheap ``docker start``); with VOXGATE_MANAGER_REMOVE_ON_EXIT=1 (compose.yaml's setting) it
is removed, with its anonymous volumes, so nothing of this instance is left."""

from __future__ import annotations

import signal

from manager_harness import speech
from test_manager_docker import container, dclient, docker_model, instance, mgr_factory  # noqa: F401 - fixtures


def test_stop_on_exit_keeps_the_stopped_container_and_remove_on_exit_leaves_nothing(dclient, instance, mgr_factory):  # noqa: F811
    entry = docker_model(instance)
    m = mgr_factory([entry], env={"VOXGATE_MANAGER_STOP_ON_EXIT": "1"})
    assert speech(m.url).status_code == 200
    assert m.stop(signal.SIGTERM) == 0
    kept = container(dclient, instance)
    assert kept.status == "exited"  # stopped, kept for the next start
    anonymous = [mt["Name"] for mt in kept.attrs["Mounts"] if mt.get("Type") == "volume"]
    assert anonymous  # the image's VOLUMEs this entry does not mount

    m2 = mgr_factory([entry], env={"VOXGATE_MANAGER_REMOVE_ON_EXIT": "1"})
    assert speech(m2.url).status_code == 200
    assert container(dclient, instance).id == kept.id  # the kept container was started again, not re-created
    assert m2.stop(signal.SIGTERM) == 0
    assert not dclient.containers.list(all=True, filters={"label": f"io.voxgate.instance={instance}"})
    names = {v.name for v in dclient.volumes.list()}
    assert not [v for v in anonymous if v in names]
    assert "removed model containers on exit" in m2.log_path.read_text()
