"""Each compat app run twice, side by side: directly (`python app.py` on loopback, as its author runs it) and as
a spacehub space behind the proxy. Tests exercise both the same way and compare what they get."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from support.server import Server, free_port

APPS = Path(__file__).resolve().parent / "apps"
OWNER = "admin"


@dataclass(frozen=True)
class Pair:
    name: str
    direct: str  # http://127.0.0.1:PORT
    hub: str  # http://admin-<name>.space.localhost:PORT
    repo_id: str


def upload(server: Server, name: str) -> None:
    """Create the space and upload the app folder as its tree (the build starts)."""
    server.api.post("/api/repos/create", json={"type": "space", "name": name, "organization": OWNER,
                                               "sdk": "gradio"}).raise_for_status()
    folder = APPS / name
    files = [("files", (path.relative_to(folder).as_posix(), path.read_bytes()))
             for path in sorted(folder.rglob("*")) if path.is_file() and "__pycache__" not in path.parts]
    server.api.post(f"/api/spaces/{OWNER}/{name}/upload", files=files).raise_for_status()


def start_direct(name: str, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1",
           "GRADIO_TEMP_DIR": str(log_dir / f"{name}-tmp")}
    # A copy of its own to run in: an app writes beside itself (Gradio's example cache in .gradio/), and the
    # repository's folder must stay as committed, or the next run would find a warm cache.
    workdir = log_dir / f"{name}-app"
    shutil.copytree(APPS / name, workdir, ignore=shutil.ignore_patterns(".gradio", "__pycache__"))
    out = open(log_dir / f"{name}.direct.log", "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen([sys.executable, "app.py"], cwd=workdir, env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


def wait_answering(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the app exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=2)
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def run_both(server: Server, names: list[str], log_dir: Path) -> Iterator[dict[str, Pair]]:
    """Start every app directly and on spacehub at once (builds and imports overlap), wait for all of them."""
    for name in names:
        upload(server, name)
    started = {name: start_direct(name, log_dir) for name in names}
    try:
        for process, url in started.values():
            wait_answering(url, process)
        for name in names:
            server.wait_stage(f"{OWNER}/{name}", {"RUNNING"}, timeout=600)
        yield {name: Pair(name, url, server.space_url(f"{OWNER}-{name}"), f"{OWNER}/{name}")
               for name, (_process, url) in started.items()}
    finally:
        for process, _url in started.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_log(server: Server, repo_id: str) -> str:
    return server.cli("logs", repo_id).stdout
