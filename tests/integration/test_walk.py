"""The whole walk on the process runtime with embedded defaults: push, build, run, serve, change, delete.

A real `spacehub serve` (embedded redis-server, workers, supervisor, proxy), the real CLI, real app processes,
and the real gradio_client as the caller.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from support.server import EXAMPLES, Server, app_pids

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("walk") / "data")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


@pytest.fixture(scope="module")
def hello(server):
    started = time.monotonic()
    result = server.cli("push", str(EXAMPLES / "hello"), "admin/hello")
    print(f"\npush-to-RUNNING hello (first push): {time.monotonic() - started:.1f} s")
    assert "Running: http://admin-hello.space.localhost" in result.stdout
    return result


def test_push_shows_the_build_log_and_ends_running(server, hello):
    assert "==> Building admin/hello" in hello.stdout
    assert "==> Running at" in hello.stdout
    runtime = server.api.get("/api/spaces/admin/hello/runtime").json()
    assert runtime["stage"] == "RUNNING"


def test_the_page_is_served_through_the_proxy(server, hello):
    response = server.space_get("admin-hello")
    assert response.status_code == 200
    assert "gradio" in response.text.lower()


def test_gradio_client_predicts_through_the_proxy(server, hello):
    client = Client(server.space_url("admin-hello"), verbose=False)
    assert client.predict("Ada", api_name="/greet") == "Hello Ada!"


def test_rest_two_step_call(server, hello):
    start = httpx.post(f"http://127.0.0.1:{server.port}/gradio_api/call/greet", json={"data": ["Bob"]},
                       headers={"Host": server.host("admin-hello")})
    assert start.status_code == 200, start.text
    event_id = start.json()["event_id"]
    result = server.space_get("admin-hello", f"/gradio_api/call/greet/{event_id}")
    assert "event: complete" in result.text
    assert 'data: ["Hello Bob!"]' in result.text


def test_streaming_events_arrive_spread_over_time(server):
    server.cli("push", str(EXAMPLES / "streaming"), "admin/streaming")
    start = httpx.post(f"http://127.0.0.1:{server.port}/gradio_api/call/count", json={"data": [4, 0.5]},
                       headers={"Host": server.host("admin-streaming")})
    event_id = start.json()["event_id"]
    arrivals: list[tuple[float, str]] = []
    with httpx.stream("GET", f"http://127.0.0.1:{server.port}/gradio_api/call/count/{event_id}",
                      headers={"Host": server.host("admin-streaming")}, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: [\"step"):
                arrivals.append((time.monotonic(), line))
    assert len(arrivals) >= 4, arrivals
    assert "step 1 step 2 step 3 step 4" in arrivals[-1][1]
    # Sent 0.5 s apart: buffered delivery would bring them all at once at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 1.0


def test_second_push_serves_new_code_and_unchanged_push_builds_nothing(server, hello, tmp_path):
    changed = tmp_path / "hello"
    shutil.copytree(EXAMPLES / "hello", changed)
    app = changed / "app.py"
    app.write_text(app.read_text().replace('f"Hello {name}!"', 'f"Howdy {name}!"'))
    started = time.monotonic()
    server.cli("push", str(changed), "admin/hello")
    print(f"\npush-to-RUNNING hello (code change): {time.monotonic() - started:.1f} s")
    client = Client(server.space_url("admin-hello"), verbose=False)
    assert client.predict("Ada", api_name="/greet") == "Howdy Ada!"

    again = server.cli("push", str(changed), "admin/hello")
    assert "(unchanged)" in again.stdout
    assert "==> Building" not in again.stdout
    builds = server.api.get("/api/spaces/admin/hello/runtime").json()
    assert builds["stage"] == "RUNNING"


def test_bad_archives_are_refused_and_nothing_is_written(server, hello):
    before = server.api.get("/api/spaces/admin/hello").json()["sha"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.py")
        data = b"print('x')"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    response = server.api.post("/api/spaces/admin/hello/upload", content=buf.getvalue(),
                               headers={"Content-Type": "application/gzip"})
    assert response.status_code == 400
    assert "../evil.py" in response.json()["error"]
    assert response.headers["X-Error-Code"] == "UnsafeUpload"
    assert server.api.get("/api/spaces/admin/hello").json()["sha"] == before
    assert not (server.data_dir / "evil.py").exists()
    leftovers = list((server.data_dir / "tmp").iterdir()) if (server.data_dir / "tmp").exists() else []
    assert leftovers == []


@pytest.mark.parametrize(("name", "rule"), [("bad--name", "--"), ("-x", "start"), ("a b", "letters")])
def test_bad_names_are_refused(server, name, rule):
    response = server.api.post("/api/repos/create", json={"name": name, "type": "space", "sdk": "gradio"})
    assert response.status_code == 400
    assert rule in response.json()["error"]


def test_reserved_owner_names_are_refused(server):
    result = server.cli("users", "create", "api", check=False)
    assert result.returncode != 0
    assert "reserved" in result.stderr


def test_bad_readme_field_gives_config_error_naming_it(server, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "README.md").write_text("---\nsdk: gradio\ncolorFrom: chartreuse\n---\n")
    (bad / "app.py").write_text("print('never runs')\n")
    result = server.cli("push", str(bad), "admin/badconfig", check=False)
    assert result.returncode != 0
    assert "CONFIG_ERROR" in result.stderr and "colorFrom" in result.stderr
    runtime = server.api.get("/api/spaces/admin/badconfig/runtime").json()
    assert runtime["stage"] == "CONFIG_ERROR"
    assert "colorFrom" in runtime["errorMessage"]


def test_missing_app_file_gives_no_app_file(server, tmp_path):
    empty = tmp_path / "noapp"
    empty.mkdir()
    (empty / "README.md").write_text("---\nsdk: gradio\n---\n# nothing to run\n")
    result = server.cli("push", str(empty), "admin/noapp", check=False)
    assert result.returncode != 0
    assert server.api.get("/api/spaces/admin/noapp/runtime").json()["stage"] == "NO_APP_FILE"


def test_colliding_labels_both_work_at_different_hosts(server):
    server.cli("users", "create", "a-b")
    server.cli("users", "create", "a")
    first = server.cli("push", str(EXAMPLES / "hello"), "a-b/c")
    second = server.cli("push", str(EXAMPLES / "hello"), "a/b-c")
    url_1 = first.stdout.strip().splitlines()[-1].split("Running: ")[1]
    url_2 = second.stdout.strip().splitlines()[-1].split("Running: ")[1]
    assert url_1 != url_2
    for url in (url_1, url_2):
        label = url.split("//")[1].split(".")[0]
        assert server.space_get(label).status_code == 200


def _app_port(server: Server, repo_id: str) -> int:
    handle = server.space_handle(repo_id)
    assert handle is not None, f"{repo_id} has no app"
    return int(handle["target"].rsplit(":", 1)[1])


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_app_listens_on_loopback_only(server, hello):
    port = _app_port(server, "admin/hello")
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = [line.split()[1] for line in listening if line.split()[3] == "0A"]  # LISTEN
    ours = [addr for addr in local if int(addr.split(":")[1], 16) == port]
    assert ours == [f"0100007F:{port:04X}"]  # 127.0.0.1 only
    address = _non_loopback_address()
    if address is not None:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


def test_killing_the_worker_does_not_kill_running_spaces(server, hello):
    workers = [p for p in _children_of(server.process.pid) if b"worker" in _cmdline(p)]
    assert workers
    apps_before = set(app_pids(server.data_dir))
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    time.sleep(2)
    assert apps_before <= set(app_pids(server.data_dir))
    assert server.space_get("admin-hello").status_code == 200


def test_spaces_survive_a_platform_restart(server, hello):
    apps_before = set(app_pids(server.data_dir))
    server.stop()
    server.start()
    assert server.space_get("admin-hello").status_code == 200
    assert apps_before <= set(app_pids(server.data_dir))
    client = Client(server.space_url("admin-hello"), verbose=False)
    assert client.predict("Ada", api_name="/greet") == "Howdy Ada!"


def test_run_logs_reach_the_api(server, hello):
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline and "Running on" not in text:
        text = server.cli("logs", "admin/hello").stdout
        time.sleep(1)
    assert "Running on" in text


def test_deleting_gives_404_on_its_host_and_api(server, hello):
    pids = set(app_pids(server.data_dir))
    response = server.api.request("DELETE", "/api/repos/delete", json={"name": "hello", "organization": "admin",
                                                                       "type": "space"})
    assert response.status_code == 200
    assert server.space_get("admin-hello").status_code == 404
    info = server.api.get("/api/spaces/admin/hello")
    assert info.status_code == 404 and info.headers["X-Error-Code"] == "RepoNotFound"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and set(app_pids(server.data_dir)) == pids:
        time.sleep(0.5)
    assert set(app_pids(server.data_dir)) < pids  # its process is gone


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
