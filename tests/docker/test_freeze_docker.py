"""The first tier of sleep on the Docker runtime: a container frozen with docker pause, thawed, stopped frozen."""

from __future__ import annotations

import json
import urllib.request

import pytest
from dockerkit import docker, run_spec

from spacehub_runner.plugs import Artifact, BuildPlan, Freezable
from spacehub_runner.runtimes.docker import DockerRuntime

pytestmark = pytest.mark.docker


def _state(container_id: str) -> dict[str, object]:
    return dict(json.loads(docker("inspect", container_id).stdout)[0]["State"])


def test_a_container_freezes_thaws_and_stops_while_frozen(runtime: DockerRuntime, http_image: Artifact) -> None:
    assert isinstance(runtime, Freezable)
    handle = runtime.start(run_spec(990_050, BuildPlan(recipe="docker")), http_image)
    try:
        runtime.wait_ready(handle, timeout=30)
        runtime.freeze(handle)
        runtime.freeze(handle)  # idempotent
        assert runtime.is_frozen(handle)
        assert _state(handle.data["container_id"])["Paused"] is True
        assert runtime.poll(handle) is None  # frozen is still running: never restarted as a crash

        runtime.thaw(handle)
        runtime.thaw(handle)  # idempotent
        assert not runtime.is_frozen(handle)
        with urllib.request.urlopen(f"http://{handle.target}/", timeout=10) as response:
            assert response.status == 200

        runtime.freeze(handle)
        runtime.stop(handle)  # a frozen container is unpaused to get its SIGTERM, then removed
        assert runtime.poll(handle) == -1
    finally:
        runtime.stop(handle)
