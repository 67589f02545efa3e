"""kill -9 in the middle of a `docker build`, on a real `spacehub serve` with the Docker runtime: of the RQ
work-horse running the build, and of `serve` itself (everything it runs). After each, within the reconciler's
bound (SPACEHUB_LOST_JOB_S, short here), the platform has healed itself:

- the killed build's `docker build` client is gone, and so is its step inside dockerd (BuildKit's solve was
  cancelled, not left running on its own);
- no space shows *_BUILDING or *_STARTING without a live job: the space is built again and ends RUNNING;
- HEAD and the served revision agree, and the space answers through the proxy;
- each space runs in one container, the one SQL names (no duplicate, no orphan container of the platform);
- no `docker build` client, build folder (checkout or context) or step process is left behind;
- no request to the API or the proxy was answered with a 5xx while all this went on.

A build is held in flight by its own Dockerfile: its one RUN step waits until a model repo (the gate) exists on the
platform, which the step asks for through the platform's public port (`host.docker.internal`, as every build
step may). The test makes the gate once it has checked what the kill left.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dockerkit import DOCKER, inspect_existing, instance_containers, remove_instance, write_tree

from support.faults import build_runner_pid, proc_alive, serving_head, sql, wait_for
from support.server import Server

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

LOST_JOB_S = "3"
BOUND_S = 300  # generous: a deadline for the healing below on a loaded machine, never a measure of speed

DOCKERFILE = """\
ARG SPACEHUB_BASE_IMAGE=python:3.11-slim
FROM ${SPACEHUB_BASE_IMAGE}
COPY hold.py /opt/hold.py
RUN python3 /opt/hold.py TOKEN
WORKDIR /tmp
CMD ["python3", "-m", "http.server", "7860"]
"""

# The held step: asks the platform for the gate repo until it exists (a 200); its token names it in /proc.
HOLD = """\
import sys, time, urllib.error, urllib.request

url = "http://host.docker.internal:PORT/api/models/admin/gate-" + sys.argv[1]
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                break
    except (urllib.error.URLError, OSError):
        pass
    time.sleep(0.5)
"""


# -- looking at the platform from outside ------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def build_clients(data_dir: Path) -> list[int]:
    """Live `docker build` clients of this platform (their context or Dockerfile lies in its data dir)."""
    found = []
    for pid in _pids():
        argv = _cmdline(pid)
        if len(argv) > 2 and argv[0] == DOCKER and argv[1] == "build" and proc_alive(pid) \
                and any(arg.startswith(str(data_dir)) for arg in argv):
            found.append(pid)
    return found


def held_steps(token: str) -> list[int]:
    """The held RUN step's processes, as the host sees them (a container's processes are the host's too)."""
    return [pid for pid in _pids() if _cmdline(pid)[:3] == ["python3", "/opt/hold.py", token] and proc_alive(pid)]


def build_folders(data_dir: Path) -> list[str]:
    """Checkouts and build contexts on disk (a finished build removes its own)."""
    found = [str(p) for p in (data_dir / "builds").glob("*")]
    return found + [str(p) for p in (data_dir / "tmp").glob("build-*")]


def healed(server: Server, repo_id: str) -> str | None:
    """None when the invariants hold for the space, else what does not (polled until it holds)."""
    if (problem := serving_head(server, repo_id)) is not None:
        return problem
    handles = [json.loads(h) for (h,) in sql(server, "select handle from spaces where handle is not null")]
    wanted = sorted(h["data"]["container_id"] for h in handles)
    running = sorted(c["Id"] for c in inspect_existing(instance_containers(server.data_dir))
                     if c["State"]["Running"])
    if running != wanted:
        return f"containers {running}, SQL names {wanted}"
    if all_containers := instance_containers(server.data_dir):
        stopped = sorted(set(all_containers) - set(wanted))
        if stopped:
            return f"containers no record owns: {stopped}"
    if build_clients(server.data_dir):
        return f"docker build clients left: {build_clients(server.data_dir)}"
    if build_folders(server.data_dir):
        return f"build folders left: {build_folders(server.data_dir)}"
    if server.space_get(repo_id.replace("/", "-")).status_code != 200:
        return f"{repo_id} does not answer through the proxy"
    return None


def _honest_503(response: httpx.Response) -> bool:
    """A 503 that says why in JSON (a space that is building): an answer, not a failure."""
    try:
        return response.status_code == 503 and "error" in response.json()
    except ValueError:
        return False


class ErrorWatch:
    """Asks the API and the proxy, every half second while it runs, and keeps every 5xx answer other than a 503
    in JSON that names the space's stage (a refused connection, while serve is down, is no answer)."""

    def __init__(self, server: Server, repo_id: str) -> None:
        self.server, self.repo_id = server, repo_id
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            label = self.repo_id.replace("/", "-")
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}", timeout=30,
                                  headers={"Authorization": f"Bearer {self.server.token}"}) as client:
                    for path, host in ((f"/api/spaces/{self.repo_id}/runtime", f"localhost:{self.server.port}"),
                                       ("/", self.server.host(label))):
                        response = client.get(path, headers={"Host": host})
                        if response.status_code >= 500 and not _honest_503(response):
                            self.errors.append(f"{host}{path}: {response.status_code} {response.text[:200]}")
            except httpx.HTTPError:
                continue

    def close(self) -> list[str]:
        self.stop.set()
        self.thread.join(60)
        return self.errors


# -- the platform ----------------------------------------------------------------------------------------------


def serving_docker(data_dir: Path) -> Server:
    server = Server(data_dir, runtime="docker", lost_job_s=LOST_JOB_S, reconcile_interval_s="0.5",
                    default_sleep_time_s="-1")
    server.start()
    return server


def finish(server: Server) -> None:
    server.stop()
    server.kill_apps()
    remove_instance(server.data_dir)


@pytest.fixture
def platform(tmp_path: Path, base_image: str) -> Iterator[Server]:
    server = serving_docker(tmp_path / "data")
    try:
        yield server
    finally:
        finish(server)
        for pid in build_clients(server.data_dir):  # what a failed test may leave: only this platform's
            os.kill(pid, signal.SIGKILL)


def held_space(folder: Path, server: Server) -> tuple[Path, str]:
    """A docker space whose build waits on its gate; (its folder, the gate's token)."""
    token = secrets.token_hex(6)
    write_tree(folder, {
        "README.md": "---\ntitle: Held build\nsdk: docker\napp_port: 7860\n---\n",
        "Dockerfile": DOCKERFILE.replace("TOKEN", token),
        "hold.py": HOLD.replace("PORT", str(server.port)),
    })
    return folder, token


def open_gate(server: Server, token: str) -> None:
    created = server.api.post("/api/repos/create", json={"type": "model", "name": f"gate-{token}"})
    assert created.is_success, created.text


def build_log(server: Server, repo_id: str) -> str:
    response = server.api.get(f"/api/spaces/{repo_id}/logs/build", params={"follow": "false"})
    return "".join(json.loads(line[6:])["data"] for line in response.text.splitlines() if line.startswith("data: "))


def push_held(server: Server, repo_id: str, folder: Path) -> tuple[str, int, int]:
    """Push a held space; (gate token, pid of its docker build client, pid of its held step) once it waits."""
    tree, token = held_space(folder, server)
    server.cli("push", str(tree), repo_id, "--no-follow")
    (step,) = wait_for("the build's RUN step waiting on its gate", lambda: held_steps(token) or None, BOUND_S)
    (client,) = wait_for("the build's docker client", lambda: build_clients(server.data_dir) or None, BOUND_S)
    return token, client, step


# -- the faults ------------------------------------------------------------------------------------------------


def test_killing_the_work_horse_mid_docker_build_is_healed(platform: Server, tmp_path: Path) -> None:
    repo_id = "admin/dhorse"
    watch = ErrorWatch(platform, repo_id)
    token, client, step = push_held(platform, repo_id, tmp_path / "app")
    horse = wait_for("the build's process is known", lambda: build_runner_pid(platform, repo_id), BOUND_S)
    os.kill(horse, signal.SIGKILL)

    # The build dies with its work-horse: its client, and its step inside dockerd (the solve is cancelled).
    wait_for("the killed build's docker client gone", lambda: True if not proc_alive(client) else None, BOUND_S)
    wait_for("the killed build's step gone from dockerd", lambda: True if not proc_alive(step) else None, BOUND_S)
    # Built again (held at the same step, by a new client) before the gate opens: the reconciler's retry.
    retried = wait_for("the build queued again and at its step",
                       lambda: [pid for pid in held_steps(token) if pid != step] or None, BOUND_S)
    assert len(retried) == 1, retried
    open_gate(platform, token)

    wait_for("the space has healed", lambda: True if healed(platform, repo_id) is None else None, BOUND_S)
    assert not proc_alive(horse) and held_steps(token) == []
    log = build_log(platform, repo_id)
    assert "The build stopped: the process building it is gone" in log and "Building again" in log, log[-2000:]
    assert watch.close() == []


def test_killing_serve_mid_docker_build_is_healed_after_restart(platform: Server, tmp_path: Path) -> None:
    repo_id = "admin/dserve"
    watch = ErrorWatch(platform, repo_id)
    token, client, step = push_held(platform, repo_id, tmp_path / "app")

    assert platform.process is not None
    os.killpg(platform.process.pid, signal.SIGKILL)  # serve and everything it runs (apps in sessions of their own)
    platform.process.wait(30)
    wait_for("the killed build's docker client gone", lambda: True if not proc_alive(client) else None, BOUND_S)
    wait_for("the killed build's step gone from dockerd", lambda: True if not proc_alive(step) else None, BOUND_S)
    (stage,), = sql(platform, "select stage from spaces where name = 'dserve'")
    assert stage == "BUILDING", "the kill left the space building (the fault under test)"

    platform.start()
    open_gate(platform, token)
    wait_for("the space has healed", lambda: True if healed(platform, repo_id) is None else None, BOUND_S)
    log = build_log(platform, repo_id)
    assert "The build stopped" in log and "Building again" in log, log[-2000:]
    assert held_steps(token) == []
    assert watch.close() == []
