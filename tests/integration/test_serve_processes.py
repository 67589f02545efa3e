"""Under a real `spacehub serve` the API is a process of its own (`spacehub api`, a child of serve), never on the
proxy's loop: with the API frozen the spaces are still served; killed, serve starts it again; and on SIGTERM an
upload to the API in flight finishes (the proxy drains first, the API stops after it) before serve exits."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import httpx
import pytest

from support.faults import proc_alive, serving, spacehub_child, static_tree, wait_for
from support.server import Server

pytestmark = pytest.mark.timeout(600)


def push_static(server: Server, name: str, title: str) -> str:
    assert server.api.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "static"}).is_success
    pushed = server.api.post(f"/api/spaces/admin/{name}/upload", params={"filename": "site.tar.gz"},
                             content=static_tree(title), headers={"Content-Type": "application/gzip"})
    assert pushed.status_code == 200, pushed.text
    label = f"admin-{name}"
    wait_for(f"{name} served", lambda: True if title in server.space_get(label).text else None, 180)
    return label


def test_spaces_do_not_need_the_api_process_and_serve_starts_it_again(tmp_path):
    with serving(tmp_path / "data") as server:
        assert server.process is not None
        serve_pid = server.process.pid
        api = spacehub_child(serve_pid, "api")
        assert api is not None, "serve runs the API as a child process"
        label = push_static(server, "apart", "served without the API")

        # The API frozen: the platform host waits on it, the spaces do not.
        os.kill(api, signal.SIGSTOP)
        try:
            with pytest.raises(httpx.ReadTimeout):
                server.api.get("/health", timeout=3)
            for _ in range(20):
                answer = server.space_get(label, timeout=30)
                assert answer.status_code == 200 and "served without the API" in answer.text
        finally:
            os.kill(api, signal.SIGCONT)

        # The API killed: serve's watcher starts it again, and the platform host answers again.
        os.kill(api, signal.SIGKILL)
        again = wait_for("serve starting the API again",
                         lambda: pid if (pid := spacehub_child(serve_pid, "api")) not in (None, api) else None, 120)
        assert again != api
        wait_for("/health 200 from the API started again",
                 lambda: True if server.api.get("/health").status_code == 200 else None, 120)
        assert "api exited; starting it again" in server.log.read_text()
        assert server.space_get(label).status_code == 200


@pytest.fixture
def patient(tmp_path) -> Iterator[Server]:
    with serving(tmp_path / "data", shutdown_grace_s="120") as server:
        yield server


def test_sigterm_lets_an_upload_to_the_api_finish_before_serve_exits(patient):
    server = patient
    assert server.process is not None
    api = spacehub_child(server.process.pid, "api")
    assert api is not None
    assert server.api.post("/api/repos/create", json={"type": "space", "name": "late", "sdk": "static"}).is_success
    body = static_tree("committed while stopping")
    half, rest = threading.Event(), threading.Event()
    answer: list[httpx.Response | BaseException] = []

    def chunks() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        half.set()
        rest.wait(120)
        yield body[len(body) // 2:]

    def upload() -> None:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=120,
                              headers=dict(server.api.headers)) as client:
                answer.append(client.post("/api/spaces/admin/late/upload", params={"filename": "site.tar.gz"},
                                          content=chunks(), headers={"Content-Type": "application/gzip",
                                                                     "Content-Length": str(len(body))}))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            answer.append(exc)

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    assert half.wait(60)
    server.process.send_signal(signal.SIGTERM)
    wait_for("serve stopping", lambda: True if "stopping: no new connections" in server.log.read_text() else None,
             60)
    assert proc_alive(api), "the API stops only after the proxy has drained"
    rest.set()
    uploader.join(120)
    assert answer and isinstance(answer[0], httpx.Response), answer
    assert answer[0].status_code == 200, answer[0].text
    assert server.process.wait(120) == 0
    assert "spacehub stopped" in server.log.read_text()
    wait_for("the API gone with serve", lambda: True if not proc_alive(api) else None, 30)
