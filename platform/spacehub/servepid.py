"""The pid file of `spacehub serve` under the data dir's run folder: how `spacehub stop` finds it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from spacehub.settings import Settings


def serve_pid_file(settings: Settings) -> Path:
    return settings.run_dir / "serve.pid"


def write_serve_pid(settings: Settings) -> None:
    serve_pid_file(settings).write_text(f"{os.getpid()}\n")


def remove_serve_pid(settings: Settings) -> None:
    path = serve_pid_file(settings)
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text()) == os.getpid():
            path.unlink()
