"""kill -9 of `spacehub serve`: alone, its helpers (API, embedded redis-server, workers, supervisor) die with it;
with everything it runs, in the middle of an upload, the next start removes the upload's staging folder, and the
platform serves on; in the middle of a build, the next start builds the revision again and serves it, leaving
no stage that promises work nobody does, and no build process or half-made folder behind."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.faults import (
    GatedIndex,
    hello_with,
    pid_with_cwd,
    serving,
    static_tree,
    uv_processes,
    wait_for,
)
from support.server import app_pids

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def server(tmp_path):
    with serving(tmp_path / "data") as srv:
        yield srv


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_serve_leaves_no_helper_behind(server):
    assert server.process is not None
    helpers = children_of(server.process.pid)
    assert len(helpers) >= 4, "serve runs the API, workers and supervisor (and redis) as child processes"
    server.process.kill()
    server.process.wait(30)
    wait_for("every helper of the killed serve gone", lambda: True if not any(map(alive, helpers)) else None, 60)
    assert pid_with_cwd(server.data_dir / "redis") is None
    server.start()
    assert server.api.get("/health").status_code == 200


def test_kill_9_during_an_upload_leaves_no_staging_folder_after_restart(server):
    assert server.api.post("/api/repos/create", json={"type": "space", "name": "page", "sdk": "static"}).is_success
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = os.urandom(8 * 1024 * 1024)
        info = tarfile.TarInfo("big.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    held = threading.Event()
    release = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        held.set()
        release.wait(60)
        yield body[len(body) // 2:]

    def send() -> None:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60,
                              headers=dict(server.api.headers)) as client:
                client.post("/api/spaces/admin/page/upload", params={"filename": "site.tar"}, content=chunks(),
                            headers={"Content-Type": "application/x-tar", "Content-Length": str(len(body))})
        except httpx.HTTPError:
            pass  # the server is killed under it

    uploader = threading.Thread(target=send, daemon=True)
    uploader.start()
    assert held.wait(60)
    staging = server.data_dir / "tmp"
    wait_for("the upload's staging folder", lambda: list(staging.glob("upload-*")) or None, 30)

    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)  # serve and everything it runs (apps live in sessions of their own)
    server.process.wait(30)
    release.set()
    uploader.join(60)
    assert list(staging.glob("upload-*")), "the killed upload left its staging folder (the fault under test)"

    server.start()
    assert list(staging.glob("upload-*")) == []
    pushed = server.api.post("/api/spaces/admin/page/upload", params={"filename": "site.tar.gz"},
                             content=static_tree("after the crash"), headers={"Content-Type": "application/gzip"})
    assert pushed.status_code == 200, pushed.text
    wait_for("served after the restart",
             lambda: True if "after the crash" in server.space_get("admin-page").text else None, 120)


def test_a_second_serve_on_the_same_data_dir_is_refused(server):
    second = server.cli("serve", check=False, timeout=120)
    assert second.returncode != 0
    assert f"already runs on {server.data_dir}" in second.stderr
    assert server.api.get("/health").status_code == 200


def leftovers(data_dir: Path) -> list[str]:
    """What a build leaves only when it dies: its checkout, a half-copied app, an environment without its marker."""
    from spacehub_runner.builders.process import ENV_MARKER

    found = [str(p) for p in (data_dir / "builds").glob("*")]
    found += [str(p) for p in (data_dir / "apps").glob(".partial-*")]
    found += [str(p) for p in (data_dir / "envs").iterdir() if p.is_dir() and not (p / ENV_MARKER).is_file()]
    return found


def test_kill_9_during_a_build_is_built_again_after_restart(tmp_path):
    index = GatedIndex()
    try:
        with serving(tmp_path / "data", pip_extra_index_urls=index.url, lost_job_s="3",
                     reconcile_interval_s="0.5") as server:
            index.hold()
            server.cli("push", str(hello_with(tmp_path / "app", "httpx")), "admin/built", "--no-follow")
            wait_for("the build waiting on the package index", lambda: index.asked.is_set() or None, 300)
            assert uv_processes(server.data_dir), "the build should be installing with uv"

            assert server.process is not None
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(30)
            wait_for("the killed build's uv gone", lambda: True if not uv_processes(server.data_dir) else None, 30)
            with sqlite3.connect(server.data_dir / "spacehub.db") as db:
                (stage,), = db.execute("select stage from spaces where name = 'built'").fetchall()
            assert stage == "BUILDING", "the kill left the space building (the fault under test)"

            index.gate.set()
            server.start()
            runtime = server.wait_stage("admin/built", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, timeout=300)
            assert runtime["stage"] == "RUNNING", runtime
            assert runtime["sha"] == server.api.get("/api/spaces/admin/built").json()["sha"]
            assert server.space_get("admin-built").status_code == 200
            response = server.api.get("/api/spaces/admin/built/logs/build", params={"follow": "false"})
            log = "".join(json.loads(line[6:])["data"]
                          for line in response.text.splitlines() if line.startswith("data: "))
            assert "The build stopped" in log and "Building again" in log, log[-2000:]

            handle = server.space_handle("admin/built")
            assert handle is not None
            assert app_pids(server.data_dir) == [handle["data"]["pid"]], "one app, the one SQL names"
            assert uv_processes(server.data_dir) == []
            assert leftovers(server.data_dir) == []
    finally:
        index.close()
