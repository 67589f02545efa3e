"""The process runtime keeps its promise that apps listen on loopback only, even when an app binds 0.0.0.0 itself:
a real app doing `uvicorn.run(host="0.0.0.0")` is stopped before it is ready (never routed) with the reason in
its log, and one that opens such a listener later is stopped at the supervisor's next look."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from spacehub_runner.runtimes.loopback import public_listeners
from support.server import Server, app_pids

pytestmark = pytest.mark.timeout(900)

README = b"---\nsdk: gradio\napp_file: app.py\n---\n"
APP = '''import os
import threading
import time

import uvicorn


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})

{extra}
uvicorn.run(app, host="{host}", port=int(os.environ["GRADIO_SERVER_PORT"]))
'''
LATER = '''import socket


def open_later():
    time.sleep(3)
    sock = socket.socket()
    sock.bind(("0.0.0.0", 0))
    sock.listen()
    print("listening beyond loopback now", flush=True)
    time.sleep(3600)


threading.Thread(target=open_later, daemon=True).start()
'''
STOPPED = "[spacehub] stopped: the app listens on 0.0.0.0:"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("loopback") / "data")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


def _push(server: Server, name: str, host: str, extra: str = "") -> None:
    created = server.api.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "gradio"})
    assert created.status_code == 200, created.text
    app = APP.replace("{host}", host).replace("{extra}", extra).encode()
    uploaded = server.api.post(f"/api/spaces/admin/{name}/upload",
                               files=[("files", ("README.md", README)), ("files", ("app.py", app))])
    assert uploaded.status_code == 200, uploaded.text


def _app_logs(server: Server, name: str) -> str:
    """The app's run log as the platform streams it (and whatever its log files hold yet to be copied)."""
    stream = server.api.get(f"/api/spaces/admin/{name}/logs/run", params={"follow": "false"}).text
    files = "".join(path.read_text(errors="replace") for path in Path(server.data_dir / "logs").glob("space-*.log"))
    return stream + files


def test_an_app_on_loopback_runs(server):
    _push(server, "polite", "127.0.0.1")
    assert server.wait_stage("admin/polite", {"RUNNING", "RUNTIME_ERROR", "BUILD_ERROR"})["stage"] == "RUNNING"
    assert server.space_get("admin-polite").text == "hello"


def test_an_app_that_binds_every_interface_is_stopped_before_it_is_routed(server):
    _push(server, "exposed", "0.0.0.0")
    runtime = server.wait_stage("admin/exposed", {"RUNNING", "RUNTIME_ERROR", "BUILD_ERROR"})
    assert runtime["stage"] == "RUNTIME_ERROR", runtime
    assert STOPPED in str(runtime["errorMessage"])  # the app's log tail, as the failed start reports it
    assert server.space_get("admin-exposed").status_code != 200
    assert public_listeners(app_pids(server.data_dir)) == []


def test_a_listener_opened_later_is_stopped_too(server):
    _push(server, "sneaky", "127.0.0.1", LATER)
    assert server.wait_stage("admin/sneaky", {"RUNNING", "RUNTIME_ERROR", "BUILD_ERROR"})["stage"] == "RUNNING"
    deadline = time.monotonic() + 120
    while STOPPED not in _app_logs(server, "sneaky").partition("listening beyond loopback now")[2]:
        assert time.monotonic() < deadline, _app_logs(server, "sneaky")[-3000:]
        time.sleep(0.5)
    deadline = time.monotonic() + 30
    while public_listeners(app_pids(server.data_dir)):
        assert time.monotonic() < deadline, public_listeners(app_pids(server.data_dir))
        time.sleep(0.2)
