"""A space's life after it runs, on a real `spacehub serve` with every timing short: freeze, sleep and wake;
activity (heartbeats do not count, a long generation does); one start for many first requests; redeploys without
errors; bad revisions that never get traffic; crash backoff; pauses that stay paused.

Apps are real processes; "frozen" is read from /proc (state T), "gone" from the process table.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

from support.lifecycle import handle_of, process_state, set_sleep_time, stage
from support.server import EXAMPLES, Server

pytestmark = pytest.mark.timeout(900)

FREEZE_AFTER_S = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = Server(tmp_path_factory.mktemp("lifecycle") / "data",
                 freeze_after_s=str(FREEZE_AFTER_S), default_sleep_time_s="-1", activity_flush_s="0.5",
                 reconcile_interval_s="0.5", wake_timeout_s="120", wake_page_after_s="0", drain_timeout_s="30",
                 restart_backoff_s="0.5", restart_backoff_max_s="1", max_restarts="2")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


# -- helpers -------------------------------------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], Any], timeout: float = 120, server: Server | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    log = server.log.read_text()[-3000:] if server is not None else ""
    raise AssertionError(f"timed out waiting until {what}\n{log}")


def app_pid(server: Server, repo_id: str) -> int:
    handle = handle_of(server, repo_id)
    assert handle is not None, f"{repo_id} has no running app"
    return int(handle["data"]["pid"])


def run_log(server: Server, repo_id: str) -> str:
    response = server.api.get(f"/api/spaces/{repo_id}/logs/run", params={"follow": "false"})
    return "".join(json.loads(line[6:])["data"] for line in response.text.splitlines() if line.startswith("data: "))


def space_client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=180)


def greet(server: Server, label: str, name: str) -> str:
    """One call of a hello space's API (the REST two-step)."""
    with space_client(server) as client:
        host = {"Host": server.host(label)}
        start = client.post("/gradio_api/call/greet", json={"data": [name]}, headers=host)
        assert start.status_code == 200, start.text
        result = client.get(f"/gradio_api/call/greet/{start.json()['event_id']}", headers=host)
    data = [line[6:] for line in result.text.splitlines() if line.startswith("data: ")]
    assert "event: complete" in result.text, result.text
    return str(json.loads(data[-1])[0])


def tiny_app(folder: Path, body: str) -> Path:
    """A Gradio-recipe space whose app is a few lines of plain Python (starts in milliseconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text("---\ntitle: Tiny\nsdk: gradio\nsdk_version: 6.31.0\napp_file: app.py\n---\n")
    (folder / "app.py").write_text(body)
    return folder


SERVE_OK = """
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"tiny app"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("tiny app up", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


# -- freeze, sleep, wake -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sleepy(server: Server) -> str:
    server.cli("push", str(EXAMPLES / "hello"), "admin/sleepy")
    return "admin/sleepy"


def test_an_idle_space_freezes_then_sleeps_even_with_a_tab_open_and_wakes_on_the_next_request(
        server: Server, sleepy: str) -> None:
    label = "admin-sleepy"
    assert greet(server, label, "Ada") == "Hello Ada!"
    pid = app_pid(server, sleepy)

    # A browser tab's heartbeat stream stays open the whole time: it must not count as activity.
    heartbeat_open = threading.Event()

    def hold_heartbeat() -> None:
        try:
            with httpx.stream("GET", f"http://127.0.0.1:{server.port}/gradio_api/heartbeat/tab0123",
                              headers={"Host": server.host(label)}, timeout=httpx.Timeout(5, read=None)) as response:
                heartbeat_open.set()
                for _ in response.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass

    threading.Thread(target=hold_heartbeat, daemon=True).start()
    assert heartbeat_open.wait(30)

    wait_until("the idle app is frozen", lambda: process_state(pid) == "T", server=server)
    assert stage(server, sleepy) == "RUNNING"  # a freeze is not a stage

    set_sleep_time(server, sleepy, 6)
    wait_until("the space sleeps", lambda: stage(server, sleepy) == "SLEEPING", server=server)
    wait_until("its process is gone", lambda: process_state(pid) is None, server=server)
    # The stop job ends the process first and clears the handle after, in its own commit: wait for both.
    wait_until("its handle is cleared", lambda: handle_of(server, sleepy) is None, server=server)

    # A heartbeat never wakes a sleeping space.
    with space_client(server) as client:
        beat = client.get("/gradio_api/heartbeat/tab0123", headers={"Host": server.host(label)})
    assert beat.status_code == 503
    time.sleep(1.5)
    assert stage(server, sleepy) == "SLEEPING"

    # A browser gets the waiting page at once (SPACEHUB_WAKE_PAGE_AFTER_S=0), which follows the start...
    with space_client(server) as client:
        page = client.get("/", headers={"Host": server.host(label), "Accept": "text/html,*/*"})
        assert page.status_code == 503 and page.headers["Retry-After"]
        assert "waking up" in page.text and "/.well-known/spacehub/wake" in page.text

        def ready() -> bool:
            status = client.get("/.well-known/spacehub/wake", headers={"Host": server.host(label)})
            return status.headers.get("X-Spacehub-Wake") == "ready" or "X-Spacehub-Wake" not in status.headers

        wait_until("the waiting page's status says ready", ready, server=server)
    # ...and an API client just gets its answer.
    client = Client(server.space_url(label), verbose=False)
    assert client.predict("Bob", api_name="/greet") == "Hello Bob!"
    assert stage(server, sleepy) == "RUNNING"


def test_a_frozen_space_thaws_on_the_next_request(server: Server, sleepy: str) -> None:
    set_sleep_time(server, sleepy, 3600)
    assert greet(server, "admin-sleepy", "Eve") == "Hello Eve!"
    pid = app_pid(server, sleepy)
    wait_until("the idle app is frozen", lambda: process_state(pid) == "T", server=server)
    assert greet(server, "admin-sleepy", "Ada") == "Hello Ada!"
    assert process_state(pid) in ("R", "S")
    assert app_pid(server, sleepy) == pid  # the same process, thawed, not a new start


def test_ten_concurrent_first_requests_cause_one_start(server: Server, sleepy: str) -> None:
    set_sleep_time(server, sleepy, 2)
    wait_until("the space sleeps", lambda: stage(server, sleepy) == "SLEEPING", server=server)
    starts_before = run_log(server, sleepy).count("==> Starting revision")

    def first_request(_: int) -> int:
        with space_client(server) as client:
            return client.get("/config", headers={"Host": server.host("admin-sleepy")}).status_code

    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(first_request, range(10)))
    assert codes == [200] * 10
    assert run_log(server, sleepy).count("==> Starting revision") == starts_before + 1
    set_sleep_time(server, sleepy, 3600)


def test_a_generation_longer_than_the_idle_spells_is_not_cut(server: Server) -> None:
    server.cli("push", str(EXAMPLES / "streaming"), "admin/longrun")
    set_sleep_time(server, "admin/longrun", FREEZE_AFTER_S + 2)
    steps = 12  # 0.5 s apart: 6 s, longer than the freeze and the sleep time
    host = {"Host": server.host("admin-longrun")}
    with space_client(server) as client:
        start = client.post("/gradio_api/call/count", json={"data": [steps, 0.5]}, headers=host)
        assert start.status_code == 200, start.text
        result = client.get(f"/gradio_api/call/count/{start.json()['event_id']}", headers=host)
    assert "event: complete" in result.text, result.text
    assert " ".join(f"step {i}" for i in range(1, steps + 1)) in result.text
    assert "sleeping after" not in run_log(server, "admin/longrun")  # nor was it put to sleep under it


# -- redeploys --------------------------------------------------------------------------------------------


class RequestLoop:
    """Requests one after another (the page and the API description, both stateless) until stopped."""

    def __init__(self, server: Server, label: str) -> None:
        self.server, self.label = server, label
        self.answers: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        with space_client(self.server) as client:
            while not self._stop.is_set():
                for path in ("/", "/config"):
                    try:
                        response = client.get(path, headers={"Host": self.server.host(self.label)})
                        self.answers.append((response.status_code, response.text))
                        if response.status_code != 200:
                            self.errors.append(f"{path}: {response.status_code} {response.text[:200]}")
                    except httpx.HTTPError as exc:
                        self.errors.append(f"{path}: {exc!r}")


@pytest.fixture(scope="module")
def deployed(server: Server) -> str:
    server.cli("push", str(EXAMPLES / "hello"), "admin/deployed")
    return "admin/deployed"


def test_a_redeploy_under_a_steady_request_loop_returns_no_errors(server: Server, deployed: str,
                                                                   tmp_path: Path) -> None:
    changed = tmp_path / "hello"
    shutil.copytree(EXAMPLES / "hello", changed)
    app = changed / "app.py"
    app.write_text(app.read_text().replace('title="Hello"', 'title="Howdy"'))
    old_pid = app_pid(server, deployed)
    with RequestLoop(server, "admin-deployed") as loop:
        time.sleep(1)
        server.cli("push", str(changed), deployed)
        wait_until("the new revision answers", lambda: loop.answers and "Howdy" in loop.answers[-1][1])
        time.sleep(1)
    assert loop.errors == []
    assert len(loop.answers) > 20
    titles = ["Howdy" if "Howdy" in text else "Hello" for _, text in loop.answers if '"title"' in text]
    assert titles[0] == "Hello" and titles[-1] == "Howdy"
    assert "Hello" not in titles[titles.index("Howdy"):]  # once switched, never back
    wait_until("the old revision is drained and stopped", lambda: process_state(old_pid) is None, server=server)


def test_a_revision_that_never_becomes_ready_never_gets_traffic(server: Server, deployed: str,
                                                                tmp_path: Path) -> None:
    bad = tiny_app(tmp_path / "bad", "import sys\nprint('boom: the app cannot start', flush=True)\nsys.exit(3)\n")
    serving_pid = app_pid(server, deployed)
    with RequestLoop(server, "admin-deployed") as loop:
        result = server.cli("push", str(bad), deployed, check=False)
        time.sleep(1)
    assert result.returncode != 0
    assert loop.errors == []
    assert all("Howdy" in text for _, text in loop.answers if '"title"' in text)
    assert app_pid(server, deployed) == serving_pid  # the old revision keeps serving
    runtime = server.api.get(f"/api/spaces/{deployed}/runtime").json()
    assert runtime["stage"] == "RUNNING"
    sha = server.api.get(f"/api/spaces/{deployed}").json()["sha"]
    build = server.api.get(f"/api/spaces/{deployed}/builds/{sha}").json()
    assert build["status"] == "failed"
    assert "boom: the app cannot start" in build["error"]  # the deploy failed with its logs


# -- crashes and pauses ----------------------------------------------------------------------------------


def test_a_crash_looping_app_backs_off_and_ends_in_runtime_error_with_its_logs(server: Server,
                                                                              tmp_path: Path) -> None:
    crashing = tiny_app(tmp_path / "crashing", SERVE_OK.replace(
        'print("tiny app up", flush=True)',
        'import threading\nprint("tiny app up, crashing soon", flush=True)\n'
        'threading.Timer(1.0, os._exit, (7,)).start()'))
    server.cli("push", str(crashing), "admin/crashing")
    runtime = server.wait_stage("admin/crashing", {"RUNTIME_ERROR"}, timeout=120)
    message = str(runtime["errorMessage"])
    assert "exited with code 7" in message
    assert "gave up after 2 restarts" in message
    assert "tiny app up, crashing soon" in message  # its last log lines
    log = run_log(server, "admin/crashing")
    # The delay grows: 0.5 s, then 1 s (SPACEHUB_RESTART_BACKOFF_S doubling, capped by ..._MAX_S).
    assert "restarting in 0.5s (restart 1 of 2)" in log
    assert "restarting in 1s (restart 2 of 2)" in log
    assert log.count("tiny app up, crashing soon") == 3  # the first start and two restarts
    time.sleep(2)
    assert stage(server, "admin/crashing") == "RUNTIME_ERROR"  # and no more restarts
    assert handle_of(server, "admin/crashing") is None


def test_a_paused_space_stays_paused_when_requested(server: Server, tmp_path: Path) -> None:
    server.cli("push", str(tiny_app(tmp_path / "pausable", SERVE_OK)), "admin/pausable")
    pid = app_pid(server, "admin/pausable")
    assert server.api.post("/api/spaces/admin/pausable/pause").status_code == 200
    wait_until("its process is gone", lambda: process_state(pid) is None, server=server)
    with space_client(server) as client:
        for accept in ("*/*", "text/html"):
            response = client.get("/", headers={"Host": server.host("admin-pausable"), "Accept": accept})
            assert response.status_code == 503
            assert "PAUSED" in response.text
    time.sleep(2)
    assert stage(server, "admin/pausable") == "PAUSED"
    assert handle_of(server, "admin/pausable") is None
    assert "Waking up" not in run_log(server, "admin/pausable")
