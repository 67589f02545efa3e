"""A real image registry for tests: Debian's `docker-registry` (the CNCF distribution server, installed by
deploy/setup/system.sh) on a free loopback port, with htpasswd auth and its own storage folder.

Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP) by default, so no TLS is needed for the engine
to push and pull there.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx

from support.server import free_port

BINARY = "/usr/bin/docker-registry"


@dataclass(frozen=True)
class Registry:
    address: str  # host:port
    username: str
    password: str
    root: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://{self.address}", auth=(self.username, self.password), timeout=30)


@contextmanager
def running_registry(folder: Path, start_timeout_s: float = 30.0) -> Iterator[Registry]:
    if shutil.which(BINARY) is None:
        raise RuntimeError(f"{BINARY} is missing: run deploy/setup/system.sh (as root) first")
    port = free_port()
    username, password = "spacehub-test", secrets.token_urlsafe(12)
    (folder / "htpasswd").write_text(
        f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    (folder / "config.yml").write_text(f"""\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {folder / "data"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
auth:
  htpasswd:
    realm: spacehub-test
    path: {folder / "htpasswd"}
""")
    log = (folder / "registry.log").open("wb")
    proc = subprocess.Popen([BINARY, "serve", str(folder / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    registry = Registry(f"127.0.0.1:{port}", username, password, folder)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with registry.client() as http:
                    if http.get("/v2/").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not answer: {(folder / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield registry
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
