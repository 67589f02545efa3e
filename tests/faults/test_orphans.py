"""The reconciler removes what no record owns, on a real `spacehub serve` (process runtime): an app process group
working in `apps/` that no space or deployment names, a fork-server that answers on no socket and serves no
app, and build folders (a checkout, a docker build context) of builds no process runs. What is owned stays: the
running space keeps its one app and is served throughout."""

from __future__ import annotations

import os
import subprocess

import pytest

from support.faults import serving, static_tree, wait_for
from support.server import app_pids

pytestmark = pytest.mark.timeout(600)

BOUND_S = 120  # generous: a deadline for the reconciler (SPACEHUB_LOST_JOB_S is 2 s here), not a measure of speed


@pytest.fixture
def server(tmp_path):
    with serving(tmp_path / "data", lost_job_s="2", reconcile_interval_s="0.5") as srv:
        yield srv


def spawn_in(folder, *argv: str) -> subprocess.Popen[bytes]:
    """A process group of its own working in `folder`, as an app or a fork-server would."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(list(argv), cwd=folder, start_new_session=True)


def test_orphans_are_removed_and_owned_things_kept(server):
    assert server.api.post("/api/repos/create", json={"type": "space", "name": "page", "sdk": "static"}).is_success
    assert server.api.post("/api/spaces/admin/page/upload", params={"filename": "site.tar.gz"},
                           content=static_tree("owned"), headers={"Content-Type": "application/gzip"}).is_success
    server.wait_stage("admin/page", {"RUNNING"}, timeout=120)
    handle = server.space_handle("admin/page")
    assert handle is not None
    owned = int(handle["data"]["pid"])

    data = server.data_dir
    # An app whose start died before it was recorded: a group (a shell and its child) working in an app folder.
    stray_app = spawn_in(data / "apps" / "lost-app", "/bin/sh", "-c", "sleep 600 & wait")
    # A fork-server that lost its socket: working in its home under run/forkservers, answering nothing.
    stray_server = spawn_in(data / "run" / "forkservers" / "0123456789abcdef.home", "sleep", "600")
    # Folders of a build that no process runs (none has this id).
    checkout, context = data / "builds" / "4242", data / "tmp" / "build-4242-x1y2"
    for folder in (checkout, context):
        folder.mkdir(parents=True)
        (folder / "app.py").write_text("print('left behind')\n")

    try:
        wait_for("the stray app group stopped", lambda: stray_app.poll(), BOUND_S)
        wait_for("the stray fork-server stopped", lambda: stray_server.poll(), BOUND_S)
        wait_for("the build folders removed",
                 lambda: True if not checkout.exists() and not context.exists() else None, BOUND_S)
    finally:
        for process in (stray_app, stray_server):
            if process.poll() is None:
                process.kill()
            process.wait(10)
    assert stray_app.returncode == -9 and stray_server.returncode == -9
    # The shell's child went with its group; what is owned was left alone.
    assert {os.getpgid(pid) for pid in app_pids(data)} == {int(handle["data"]["pgid"])}
    assert owned in app_pids(data)
    assert server.space_handle("admin/page") == handle
    assert "owned" in server.space_get("admin-page").text
    assert "an app no space or deployment owns" in server.log.read_text()
