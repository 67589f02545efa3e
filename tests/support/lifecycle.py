"""Looking at a space's sleep from outside, for tests and benchmarks (`make bench` wake numbers).

Frozen: the app's process group is stopped (state T in /proc, process runtime) or its container paused (docker);
its stage still reads RUNNING. Sleeping: stage SLEEPING and no app at all. To get there fast, start
`Server(..., freeze_after_s="1", activity_flush_s="0.5", reconcile_interval_s="0.5")` and set a space's sleep time
(`set_sleep_time`, at least 1 s).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from support.server import Server


def handle_of(server: Server, repo_id: str) -> dict[str, Any] | None:
    """The space's runtime handle as SQL has it (None: no app)."""
    return server.space_handle(repo_id)


def process_state(pid: int) -> str | None:
    """The state letter of a process (R, S, T for stopped...), None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()[0]


def is_frozen(server: Server, repo_id: str) -> bool:
    handle = handle_of(server, repo_id)
    if handle is None:
        return False
    if handle["runtime"] == "docker":
        out = subprocess.run(["docker", "inspect", "-f", "{{.State.Paused}}", handle["data"]["container_id"]],
                             capture_output=True, text=True, check=False).stdout.strip()
        return out == "true"
    return process_state(int(handle["data"]["pid"])) == "T"


def stage(server: Server, repo_id: str) -> str:
    return str(server.api.get(f"/api/spaces/{repo_id}/runtime").json()["stage"])


def set_sleep_time(server: Server, repo_id: str, seconds: int) -> None:
    response = server.api.post(f"/api/spaces/{repo_id}/sleeptime", json={"seconds": seconds})
    response.raise_for_status()


def wait_frozen(server: Server, repo_id: str, timeout: float = 120) -> None:
    _wait(lambda: is_frozen(server, repo_id), f"{repo_id} frozen", timeout)


def wait_sleeping(server: Server, repo_id: str, timeout: float = 120) -> None:
    """SLEEPING and its app gone (the stop follows the stage)."""
    _wait(lambda: stage(server, repo_id) == "SLEEPING" and handle_of(server, repo_id) is None,
          f"{repo_id} sleeping", timeout)


def first_byte_s(server: Server, label: str, path: str = "/") -> float:
    """Seconds from sending GET `path` to the first byte of a 200 answer (through the proxy)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=300) as client:
        started = time.perf_counter()
        with client.stream("GET", path, headers={"Host": server.host(label)}) as response:
            next(response.iter_raw())
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise AssertionError(f"GET {path} on {label}: {response.status_code}")
    return elapsed


def _wait(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
