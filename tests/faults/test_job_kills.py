"""kill -9 of the processes that do a space's work, on a real `spacehub serve` (process runtime): the RQ
work-horse in the middle of a build, the worker under it, the supervisor. After each, within the reconciler's
bound (SPACEHUB_LOST_JOB_S, short here), the platform has healed itself:

- no space shows *_BUILDING or *_STARTING without a live job (it ends RUNNING);
- HEAD and the served revision agree;
- each app is served once (one app process per running space, the one SQL names);
- no process is left behind (no uv of the killed build, the killed process stays dead).

A build is held in flight by a package index the test owns: it answers nothing until the test opens its gate,
so a build stays at "installing requirements" until then.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.faults import (
    GatedIndex,
    build_runner_pid,
    hello_with,
    proc_alive,
    serving,
    serving_head,
    sql,
    uv_processes,
)
from support.server import Server, app_pids

LOST_JOB_S = 3
HEAL_TIMEOUT_S = 180  # generous: a deadline for the checks below, never a measure of speed


@pytest.fixture(scope="module")
def index() -> Iterator[GatedIndex]:
    gated = GatedIndex(HEAL_TIMEOUT_S)
    yield gated
    gated.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, index: GatedIndex) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("faults") / "data", lost_job_s=str(LOST_JOB_S), reconcile_interval_s="0.5",
                 pip_extra_index_urls=index.url, default_sleep_time_s="-1") as srv:
        yield srv


# -- looking at the platform from outside ----------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], Any], server: Server, timeout: float = HEAL_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting until {what} (last: {value!r})\n{server.log.read_text()[-4000:]}")


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and proc_alive(int(entry.name)):
            try:
                if parent_pid(int(entry.name)) == pid:
                    found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except (OSError, ValueError):
                continue
    return found


def healed(server: Server, repo_ids: list[str]) -> str | None:
    """None when the invariants hold for these spaces, else what does not (polled until it holds)."""
    for repo_id in repo_ids:
        if (problem := serving_head(server, repo_id)) is not None:
            return problem
    handles = [json.loads(h) for (h,) in sql(server, "select handle from spaces where handle is not null")]
    wanted = sorted(int(h["data"]["pid"]) for h in handles)
    running = sorted(app_pids(server.data_dir))
    if running != wanted:
        return f"app processes {running}, SQL names {wanted}"
    if uv_processes(server.data_dir):
        return f"uv processes left: {uv_processes(server.data_dir)}"
    return None


def push_held(server: Server, index: GatedIndex, repo_id: str, folder: Path) -> int:
    """Push, and return the pid of the work-horse once its build waits on the held index."""
    index.hold()
    server.cli("push", str(folder), repo_id, "--no-follow")
    wait_until("the build asks the package index", lambda: index.asked.is_set(), server)
    return wait_until("the build's process is known", lambda: build_runner_pid(server, repo_id), server)


# -- the faults ------------------------------------------------------------------------------------------------


def test_killing_the_work_horse_mid_build_is_healed(server: Server, index: GatedIndex, tmp_path: Path) -> None:
    horse = push_held(server, index, "admin/horse", hello_with(tmp_path / "app", "httpx"))
    assert uv_processes(server.data_dir), "the build should be installing with uv"
    os.kill(horse, signal.SIGKILL)
    wait_until("the killed build's uv is gone too", lambda: not uv_processes(server.data_dir), server)
    index.gate.set()
    wait_until("the space has healed", lambda: healed(server, ["admin/horse"]) is None, server)
    assert not proc_alive(horse)
    response = server.api.get("/api/spaces/admin/horse/logs/build", params={"follow": "false"})
    log = "".join(json.loads(line[6:])["data"] for line in response.text.splitlines() if line.startswith("data: "))
    assert "The build stopped: the process building it is gone" in log and "Building again" in log


def test_killing_the_worker_mid_build_is_healed(server: Server, index: GatedIndex, tmp_path: Path) -> None:
    horse = push_held(server, index, "admin/worker", hello_with(tmp_path / "app", "anyio"))
    worker = parent_pid(horse)
    assert "worker" in Path(f"/proc/{worker}/cmdline").read_bytes().decode()
    os.kill(worker, signal.SIGKILL)
    wait_until("the worker's work-horse gone with it, and its uv",
               lambda: not proc_alive(horse) and not uv_processes(server.data_dir), server)
    # The work-horse dies with its worker (no orphan builds on); serve starts another worker, and the lost build
    # is built again once the index answers.
    index.gate.set()
    wait_until("the space has healed", lambda: healed(server, ["admin/horse", "admin/worker"]) is None, server)
    assert not proc_alive(worker)


def test_killing_the_supervisor_is_healed_without_a_second_start(server: Server, index: GatedIndex,
                                                                 tmp_path: Path) -> None:
    index.gate.set()
    wait_until("the earlier spaces run", lambda: healed(server, ["admin/horse", "admin/worker"]) is None, server)
    before = sorted(app_pids(server.data_dir))
    assert server.process is not None
    supervisors = [pid for pid, cmd in children(server.process.pid) if "supervisor" in cmd]
    assert len(supervisors) == 1
    os.kill(supervisors[0], signal.SIGKILL)
    wait_until("serve has started another supervisor",
               lambda: [pid for pid, cmd in children(server.process.pid)  # type: ignore[union-attr]
                        if "supervisor" in cmd and pid != supervisors[0]], server)
    # A push while it was away is built, and nothing that ran is started twice.
    server.cli("push", str(hello_with(tmp_path / "app", "sniffio")), "admin/horse")
    wait_until("the space has healed", lambda: healed(server, ["admin/horse", "admin/worker"]) is None, server)
    after = sorted(app_pids(server.data_dir))
    assert len(after) == len(before) == 2
    worker_app = json.loads(sql(server, "select handle from spaces where name = 'worker'")[0][0])["data"]["pid"]
    assert worker_app in before and worker_app in after  # the untouched space kept its one app
    for repo_id in ("admin/horse", "admin/worker"):
        assert server.space_get(repo_id.replace("/", "-")).status_code == 200


SLOW_START = """
import http.server, os, time

while not os.path.exists({hold!r}):  # held until the test lets it listen
    time.sleep(0.2)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def starting_deployment(server: Server, repo_id: str) -> tuple[int, int] | None:
    """(deployment id, pid of the job running it) of the space's start in progress, once its app exists."""
    owner, name = repo_id.split("/")
    rows = sql(server, "select d.id, d.runner from deployments d join spaces s on s.id = d.space_id "
                       "where s.owner = ? and s.name = ? and d.outcome = 'starting' and d.handle is not null",
               owner, name)
    return (int(rows[0][0]), int(str(rows[0][1]).rsplit(":", 2)[1])) if rows else None


def test_killing_a_start_half_way_is_retried(server: Server, index: GatedIndex, tmp_path: Path) -> None:
    index.gate.set()
    hold = tmp_path / "listen-now"
    folder = tmp_path / "slow"
    folder.mkdir()
    folder.joinpath("README.md").write_text("---\ntitle: Slow\nsdk: gradio\nsdk_version: 6.31.0\n"
                                            "app_file: app.py\n---\n")
    folder.joinpath("app.py").write_text(SLOW_START.format(hold=str(hold)))
    server.cli("push", str(folder), "admin/slow", "--no-follow")
    cut_off, job = wait_until("the start is under way", lambda: starting_deployment(server, "admin/slow"), server,
                              timeout=600)
    os.kill(job, signal.SIGKILL)
    wait_until("the cut-off start is recorded and retried",
               lambda: sql(server, "select outcome from deployments where id = ?", cut_off) == [("failed",)]
               and (starting_deployment(server, "admin/slow") or (0, 0))[0] > cut_off, server)
    hold.touch()
    wait_until("the space has healed",
               lambda: healed(server, ["admin/horse", "admin/worker", "admin/slow"]) is None, server)
    assert not proc_alive(job)
    (error,) = sql(server, "select error from deployments where id = ?", cut_off)[0]
    assert error.startswith("cut off: ")
    assert server.space_get("admin-slow").text == "ok"
