"""`SPACEHUB_RUNTIME=auto`: Docker whenever an engine answers a ping, else the process runtime."""

from __future__ import annotations

import pytest

from spacehub import dockerhost
from spacehub.settings import Settings
from spacehub_runner import backends

pytestmark = pytest.mark.docker


def test_auto_picks_docker_when_the_engine_answers(docker_ready: None) -> None:
    assert backends.runtime_name(Settings(runtime="auto")) == "docker"
    assert backends.runtime_name(Settings(runtime="process")) == "process"


@pytest.mark.parametrize("docker_host", ["unix:///nonexistent/docker.sock", "tcp://192.0.2.1:2375"])
def test_auto_falls_back_to_processes_when_nothing_answers(monkeypatch: pytest.MonkeyPatch, docker_host: str) -> None:
    # 192.0.2.1 (TEST-NET-1) never answers: the ping is bounded by SPACEHUB_DOCKER_PING_TIMEOUT_S.
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    settings = Settings(runtime="auto", docker_ping_timeout_s=1)
    assert not dockerhost.engine_answers(settings.docker_ping_timeout_s)
    assert backends.runtime_name(settings) == "process"
