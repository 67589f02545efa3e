"""The reconciler removes what no record owns, on a real `spacehub serve` (process runtime): an app process group
working in `apps/` that no space or deployment names, a fork-server that answers on no socket and serves no
app, and build folders (a checkout, a docker build context) of builds no process runs. What is owned stays: the
running space keeps its one app and is served throughout."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from support.faults import serving, static_tree, wait_for
from support.server import EXAMPLES, app_pids

pytestmark = pytest.mark.timeout(600)

BOUND_S = 120  # generous: a deadline for the reconciler (SPACEHUB_LOST_JOB_S is 2 s here), not a measure of speed


@pytest.fixture
def server(tmp_path):
    with serving(tmp_path / "data", lost_job_s="2", reconcile_interval_s="0.5") as srv:
        yield srv


def spawn_in(folder, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A process group of its own working in `folder`, as an app or a fork-server would."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(list(argv), cwd=folder, start_new_session=True, env={**os.environ, **(env or {})})


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
    stray_app = spawn_in(data / "apps" / "lost-app", "/bin/sh", "-c", "sleep 600 & wait",
                         env={"SPACE_ID": "admin/lost"})
    # A person's shell working in an app folder is no app (it has no app's environment): left alone.
    visitor = spawn_in(data / "apps" / "lost-app", "sleep", "600")
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
    # The shell's child went with its group; the visitor and what is owned were left alone.
    try:
        assert visitor.poll() is None
        assert {os.getpgid(pid) for pid in app_pids(data)} == {int(handle["data"]["pgid"]), visitor.pid}
    finally:
        visitor.kill()
        visitor.wait(10)
    assert owned in app_pids(data)
    assert server.space_handle("admin/page") == handle
    assert "owned" in server.space_get("admin-page").text
    assert "an app no space or deployment owns" in server.log.read_text()


def test_an_app_sql_lost_track_of_is_replaced_and_removed(server):
    """While serve is down, SQL forgets a running Gradio app (its handle and its deployment, as a crash between
    starting and recording it would): the next start starts the space afresh, and the forgotten app (forked by
    its fork-server, which outlived serve) is removed, so the space is served by one app."""
    server.cli("push", str(EXAMPLES / "hello"), "admin/hello")
    lost = server.space_handle("admin/hello")
    assert lost is not None
    server.stop()
    assert int(lost["data"]["pid"]) in app_pids(server.data_dir), "apps outlive serve, for re-adoption"
    with sqlite3.connect(server.data_dir / "spacehub.db") as db:
        db.execute("update spaces set handle = null where name = 'hello'")
        db.execute("delete from deployments")
    server.start()

    wait_for("the forgotten app removed",
             lambda: True if int(lost["data"]["pid"]) not in app_pids(server.data_dir) else None, BOUND_S)
    fresh = wait_for("the space started afresh", lambda: server.space_handle("admin/hello"), BOUND_S)
    assert fresh["data"]["pid"] != lost["data"]["pid"]
    wait_for("one app, the one SQL names",
             lambda: True if app_pids(server.data_dir) == [fresh["data"]["pid"]] else None, BOUND_S)
    assert server.wait_stage("admin/hello", {"RUNNING"}, timeout=BOUND_S)["stage"] == "RUNNING"
