"""The pid file of `spacehub serve` under the data dir's run folder (how `spacehub stop` finds it, and how a
second `serve` on the same data dir is refused), and tying helper processes' lives to serve's."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

from spacehub.errors import Conflict
from spacehub.settings import Settings

_PR_SET_PDEATHSIG = 1


def serve_pid_file(settings: Settings) -> Path:
    return settings.run_dir / "serve.pid"


def write_serve_pid(settings: Settings) -> None:
    serve_pid_file(settings).write_text(f"{os.getpid()}\n")


def remove_serve_pid(settings: Settings) -> None:
    path = serve_pid_file(settings)
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text()) == os.getpid():
            path.unlink()


def running_serve(settings: Settings) -> int | None:
    """The pid of a live `spacehub serve` of this data dir, if any (a stale file from a killed one is not)."""
    try:
        pid = int(serve_pid_file(settings).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"spacehub" in cmdline and b"serve" in cmdline and pid != os.getpid() else None


def claim(settings: Settings) -> None:
    """Refuse a second `serve` on one data dir (two would fight over its redis, sockets and apps)."""
    other = running_serve(settings)
    if other is not None:
        raise Conflict(f"spacehub serve (pid {other}) already runs on {settings.data_dir}: stop it first "
                       "(`spacehub stop`)")
    write_serve_pid(settings)


def die_with_parent() -> None:
    """preexec_fn of serve's helpers (redis-server, workers, supervisor): should serve be killed (-9), the
    kernel sends them SIGTERM, so no helper outlives it holding the data dir's sockets and files."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
