"""The end-to-end walk of tests/integration/test_walk.py on the Docker runtime: the same tests (hello, streaming,
a second push, an unchanged push) against a real `spacehub serve` with SPACEHUB_RUNTIME=docker, plus what only
containers show: one container per running space, surviving a platform restart without a duplicate, gone on
delete.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerkit import inspect_existing, instance_containers, record, remove_instance
from gradio_client import Client
from integration.test_walk import (  # noqa: F401 - the walk's own tests, run here on docker
    test_gradio_client_predicts_through_the_proxy,
    test_push_shows_the_build_log_and_ends_running,
    test_rest_two_step_call,
    test_second_push_serves_new_code_and_unchanged_push_builds_nothing,
    test_streaming_events_arrive_spread_over_time,
    test_the_page_is_served_through_the_proxy,
)

from support.server import EXAMPLES, Server

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sdk_image: str) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("walk-docker") / "data"
    srv = Server(data_dir, runtime="docker")
    srv.start()
    yield srv
    srv.stop()
    remove_instance(data_dir)


@pytest.fixture(scope="module")
def hello(server: Server) -> object:
    """The walk's first push (timed: the SDK image is present, the app image is not)."""
    started = time.monotonic()
    result = server.cli("push", str(EXAMPLES / "hello"), "admin/hello")
    record("walk: push-to-RUNNING hello, first push", time.monotonic() - started)
    assert "Running: http://admin-hello.space.localhost" in result.stdout
    return result


def _space_containers(server: Server, space_label_key: str) -> list[dict]:
    found = inspect_existing(instance_containers(server.data_dir, all_states=True))
    return [c for c in found if c["Config"]["Labels"].get("spacehub.space-key") == space_label_key]


def test_hello_runs_in_one_locked_down_container(server: Server, hello) -> None:
    (container,) = _space_containers(server, "admin/hello")
    assert container["State"]["Running"]
    host_config = container["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"] and "no-new-privileges" in host_config["SecurityOpt"]
    assert container["Config"]["User"] == "1000:1000"
    env = dict(item.split("=", 1) for item in container["Config"]["Env"])
    assert env["HF_ENDPOINT"] == f"http://host.docker.internal:{server.port}"
    assert env["SPACE_ID"] == "admin/hello"


def test_code_change_measures_push_to_running(server: Server, hello, tmp_path: Path) -> None:
    # (the walk's second-push test measures it too; recorded here for the docker timings summary)
    changed = tmp_path / "hello"
    changed.mkdir()
    for item in (EXAMPLES / "hello").iterdir():
        (changed / item.name).write_bytes(item.read_bytes())
    app = changed / "app.py"
    app.write_text(app.read_text().replace('f"Hello {name}!"', 'f"Hi {name}!"'))
    started = time.monotonic()
    result = server.cli("push", str(changed), "admin/hello")
    record("walk: push-to-RUNNING hello, code-only change", time.monotonic() - started)
    assert "Running: " in result.stdout
    assert Client(server.space_url("admin-hello"), verbose=False).predict("Ada", api_name="/greet") == "Hi Ada!"
    # The old revision's container is removed once drained after the switch (lifecycle): then exactly one.
    deadline = time.monotonic() + 60
    while len(_space_containers(server, "admin/hello")) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(_space_containers(server, "admin/hello")) == 1


def test_killing_the_worker_does_not_stop_containers(server: Server, hello) -> None:
    before = set(instance_containers(server.data_dir, all_states=False))
    assert before
    server.cli("logs", "admin/hello")  # the platform answers
    workers = [p for p in _children(server) if b"worker" in _cmdline(p)]
    assert workers
    import os
    import signal

    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    time.sleep(2)
    assert before <= set(instance_containers(server.data_dir, all_states=False))
    assert server.space_get("admin-hello").status_code == 200


def test_a_platform_restart_loses_no_space_and_duplicates_no_container(server: Server, hello) -> None:
    before = sorted(instance_containers(server.data_dir, all_states=True))
    assert before
    server.stop()
    server.start()
    # A few supervisor ticks (SPACEHUB_RECONCILE_INTERVAL_S=1) with the containers it found running.
    time.sleep(4)
    assert sorted(instance_containers(server.data_dir, all_states=True)) == before
    assert server.space_get("admin-hello").status_code == 200
    assert Client(server.space_url("admin-hello"), verbose=False).predict("Ada", api_name="/greet") == "Hi Ada!"
    runtime = server.api.get("/api/spaces/admin/hello/runtime").json()
    assert runtime["stage"] == "RUNNING"


def test_deleting_removes_the_container(server: Server, hello) -> None:
    assert _space_containers(server, "admin/hello")
    response = server.api.request("DELETE", "/api/repos/delete",
                                  json={"name": "hello", "organization": "admin", "type": "space"})
    assert response.status_code == 200
    assert server.space_get("admin-hello").status_code == 404
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _space_containers(server, "admin/hello"):
        time.sleep(0.5)
    assert _space_containers(server, "admin/hello") == []


def _children(server: Server) -> list[int]:
    assert server.process is not None
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == server.process.pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
