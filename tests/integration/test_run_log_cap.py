"""A chatty app's log file on the process runtime stays near SPACEHUB_RUN_LOG_MAX_BYTES while its lines still
reach the run log whole, in order and once: a real `spacehub serve` (supervisor, embedded Redis), real app
processes started through the fork-server and plainly, the real run-log API.

The file is emptied under the running app, which keeps writing through its O_APPEND stdout: its next lines must
land at the file's new start (no hole of NUL bytes) on both start paths.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from support.lifecycle import handle_of
from support.server import Server

pytestmark = pytest.mark.timeout(600)

CAP = 64 * 1024
TICK_S = 0.5  # SPACEHUB_RECONCILE_INTERVAL_S: the supervisor copies and caps once a tick
LINES = 2000
LINE_BYTES = 100  # "chatter 000042 xxx...x\n"
BURST = 40  # lines written every 0.1 s: 40 KB/s, 200 KB in all (three caps and more)
RATE = BURST * LINE_BYTES / 0.1
# The file may outgrow the cap by what the app writes until the next tick empties it: one tick's worth, counting a
# tick slowed by a busy machine as a whole second.
SLACK = RATE * (TICK_S + 1.0)

# Serves HTTP; GET /chatter starts writing LINES numbered lines at a steady pace, then "chatter done".
CHATTY = f"""
import http.server, os, sys, threading, time


def chatter():
    for n in range({LINES}):
        sys.stdout.write(f"chatter {{n:06d}} " + "x" * {LINE_BYTES - 16} + "\\n")
        if n % {BURST} == {BURST} - 1:
            sys.stdout.flush()
            time.sleep(0.1)
    print("chatter done", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/chatter":
            threading.Thread(target=chatter, daemon=True).start()
        body = b"chatty app"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


print("chatty app up", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

LINE = re.compile(r"chatter (\d{6}) (x*)")
SKIPPED = "bytes of output skipped"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = Server(tmp_path_factory.mktemp("runlogcap") / "data", run_log_max_bytes=str(CAP),
                 reconcile_interval_s=str(TICK_S), log_stream_max="10000")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


def chatty_space(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text("---\ntitle: Chatty\nsdk: gradio\nsdk_version: 6.31.0\napp_file: app.py\n---\n")
    (folder / "app.py").write_text(CHATTY)
    return folder


def run_log_lines(server: Server, repo_id: str) -> list[str]:
    response = server.api.get(f"/api/spaces/{repo_id}/logs/run", params={"follow": "false"})
    return [json.loads(line[6:])["data"].rstrip("\n") for line in response.text.splitlines()
            if line.startswith("data: ")]


def appends(pid: int, fd: int) -> bool:
    """Whether the process's descriptor was opened with O_APPEND (flags in /proc/<pid>/fdinfo are octal)."""
    fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines())
    return bool(int(fields["flags"], 8) & os.O_APPEND)


class SizeWatch:
    """Samples the log file's size (and its first bytes) until stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.largest = 0
        self.truncations = 0
        self.nul_start = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = 0
        while not self._stop.is_set():
            with self.path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                self.nul_start |= fh.read(1) == b"\0"
            self.largest = max(self.largest, size)
            self.truncations += size < last
            last = size
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("forked", [True, False], ids=["fork-server", "plain"])
def test_a_chatty_apps_log_file_stays_near_its_cap_and_every_line_reaches_the_run_log_once(
        server: Server, tmp_path: Path, forked: bool) -> None:
    name = "chatty-forked" if forked else "chatty-plain"
    repo_id = f"admin/{name}"
    # OMP_NUM_THREADS is read by native libraries as they load: the fork-server refuses, the app starts plainly.
    variables = [] if forked else [{"key": "OMP_NUM_THREADS", "value": "1"}]
    created = server.api.post("/api/repos/create", json={"name": name, "organization": "admin", "type": "space",
                                                         "sdk": "gradio", "variables": variables})
    assert created.status_code == 200, created.text
    server.cli("push", str(chatty_space(tmp_path / name)), repo_id)
    handle = handle_of(server, repo_id)
    assert handle is not None and handle["data"]["forked"] is forked
    pid = int(handle["data"]["pid"])
    assert appends(pid, 1) and appends(pid, 2)  # what makes emptying the file under the app safe

    log_file = Path(handle["data"]["log_file"])
    watch = SizeWatch(log_file)
    started = time.monotonic()
    try:
        assert server.space_get(f"admin-{name}", "/chatter").status_code == 200
        deadline = time.monotonic() + 60
        while "chatter done" not in run_log_lines(server, repo_id):
            assert time.monotonic() < deadline, f"the run log never got all lines\n{server.log.read_text()[-3000:]}"
            time.sleep(0.5)
    finally:
        watch.stop()
    print(f"\n{name}: {LINES} lines in {time.monotonic() - started:.1f} s; file at most {watch.largest} bytes, "
          f"emptied {watch.truncations} times")

    assert watch.truncations >= 2
    assert watch.largest <= CAP + SLACK, f"the log file reached {watch.largest} bytes (cap {CAP})"
    assert not watch.nul_start  # the app's writes after a truncation landed at the new start, not at its old end

    # Every line once, whole, in order; a line may only be missing where the supervisor says it skipped output
    # (an app that outran a tick: not expected at this pace, but the contract).
    expected, after_skip, seen = 0, False, 0
    for line in run_log_lines(server, repo_id):
        if SKIPPED in line:
            after_skip = True
            continue
        match = LINE.fullmatch(line)
        if match is None:
            continue
        number = int(match.group(1))
        assert len(match.group(2)) == LINE_BYTES - 16, f"a cut line: {line!r}"
        assert number == expected or (after_skip and number > expected), f"line {number} after {expected - 1}"
        expected, after_skip, seen = number + 1, False, seen + 1
    assert expected == LINES
    assert seen > LINES // 2
