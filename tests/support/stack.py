"""The production stack of deploy/compose/ as tests bring it up: a compose project of its own (its own name,
ports, disks folder and image tag), Caddy's internal CA trusted by the clients, and the clean-up of what the
stack's platform started on this host's Docker engine (its apps belong to no compose project)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from support.server import EXAMPLES, REPO

COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yml"
PREPARE_HOST = REPO / "deploy" / "compose" / "prepare-host.sh"
TOKEN = "sh_stack_test_admin_token_0123456789"
PLATFORM_HOST = "hub.localhost"
SPACES_DOMAIN = "spaces.localhost"
# The spacehub services and the role each runs (its container's command).
ROLES = {"api": "api", "proxy-1": "proxy", "proxy-2": "proxy", "worker-ops": "worker", "worker-builds": "worker",
         "supervisor": "supervisor"}
# Where each proxy listens (its loopback address; the public port and PROXY_HEALTH_PORT there).
PROXY_HOSTS = {"proxy-1": "127.0.0.1", "proxy-2": "127.0.0.2"}
# The images of this checkout: a tag of its own, so that two checkouts testing on one engine never run each
# other's code (each rebuilds from the cache).
STACK_TAG = "test-" + hashlib.sha256(str(REPO.resolve()).encode()).hexdigest()[:10]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, folder: Path) -> None:
        self.project = f"shstack{os.getpid()}"
        self.https_port = free_port()
        self.env = {"POSTGRES_PASSWORD": "stack-pg-password", "REDIS_PASSWORD": "stack-redis-password",
                    "SPACEHUB_ADMIN_TOKEN": TOKEN, "PLATFORM_HOST": PLATFORM_HOST, "SPACES_DOMAIN": SPACES_DOMAIN,
                    "HTTPS_PORT": str(self.https_port), "HTTP_PORT": str(free_port()),
                    "POSTGRES_PORT": str(free_port()), "REDIS_PORT": str(free_port()),
                    # The port the host's sandbox lets containers reach (deploy/setup/docker.sh installs it for 8000).
                    "SPACEHUB_PORT": "8000", "STACK_TAG": STACK_TAG,
                    "SPACEHUB_DISKS_DIR": str(folder / "disks"), "SPACEHUB_API_PORT": str(free_port()),
                    "PROXY_HEALTH_PORT": str(free_port()),
                    **{f"{name.upper().replace('-', '_')}_HEALTH_PORT": str(free_port())
                       for name in ("worker-ops", "worker-builds", "supervisor")}}
        self.disks = folder / "disks"
        self.env_file = folder / "stack.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))
        self.ca = folder / "caddy-root.pem"
        self.url = f"https://{PLATFORM_HOST}:{self.https_port}"

    def space_url(self, label: str) -> str:
        return f"https://{label}.{SPACES_DOMAIN}:{self.https_port}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), "--env-file",
                                 str(self.env_file), *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def prepare_host(self) -> None:
        """The host side, as the README says: the apps' disks folder on a shared mount."""
        subprocess.run([str(PREPARE_HOST), str(self.disks)], check=True, capture_output=True, timeout=60)

    def wait_healthy(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            ca = self.compose("exec", "-T", "caddy", "cat", "/data/caddy/pki/authorities/local/root.crt", check=False)
            if ca.returncode == 0 and "BEGIN CERTIFICATE" in ca.stdout:
                self.ca.write_text(ca.stdout)
                try:
                    response = httpx.get(f"{self.url}/health", verify=str(self.ca), timeout=5)
                    if response.status_code == 200:
                        return
                    last = response.text
                except httpx.HTTPError as exc:
                    last = exc
            time.sleep(2)
        logs = self.compose("logs", "--tail", "60", check=False).stdout
        raise AssertionError(f"the stack never answered over TLS: {last}\n{logs[-6000:]}")

    def container(self, service: str) -> dict[str, Any]:
        (found,) = self.compose("ps", "-q", service).stdout.split()
        return dict(json.loads(subprocess.run(["docker", "inspect", found], capture_output=True, text=True,
                                              check=True).stdout)[0])

    def client_env(self, **extra: str) -> dict[str, str]:
        """A client's environment with only Caddy's internal CA trusted (as a user of this platform would)."""
        return {**os.environ, "SSL_CERT_FILE": str(self.ca), "REQUESTS_CA_BUNDLE": str(self.ca),
                "HF_HUB_DISABLE_TELEMETRY": "1", "URL": self.url, "TOKEN": TOKEN,
                "SPACE_URL": self.space_url("admin-hello"), "EXAMPLE": str(EXAMPLES / "hello"), **extra}

    def client(self, script: str, timeout: float = 900, **extra: str) -> str:
        """Run a client script (huggingface_hub, gradio_client) against the stack over TLS."""
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=self.client_env(**extra),
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}\n" + \
            self.compose("logs", "--tail", "30", *ROLES, check=False).stdout[-8000:]
        return result.stdout

    def admin(self, *args: str, service: str = "api", timeout: float = 300) -> str:
        """A spacehub admin command inside the stack (it acts on the stack's database)."""
        return self.compose("exec", "-T", service, "spacehub", *args, timeout=timeout).stdout

    def tools(self, backups: Path, *args: str, timeout: float = 900) -> str:
        """`spacehub ARGS` in a one-off container of the `tools` service (the stack's settings, data volume, Docker
        socket and disks), with the host folder `backups` at /backups: how the README runs backup and restore."""
        return self.compose("run", "--rm", "-T", "-v", f"{backups}:/backups", "tools", *args,
                            timeout=timeout).stdout

    def stop_apps(self) -> None:
        """The apps the stack's platform started on the host's engine (they outlive the stack, by design)."""
        self.compose("exec", "-T", "worker-ops", "spacehub", "stop", check=False, timeout=300)

    def wipe(self) -> None:
        """Everything of this install: the apps, the stack with its volumes, the apps' disks."""
        self.stop_apps()
        self.compose("down", "-v", check=False, timeout=600)
        remove_apps()
        unmount_under(self.disks)
        shutil.rmtree(self.disks, ignore_errors=True)


@contextmanager
def running_stack(folder: Path) -> Iterator[Stack]:
    stack = Stack(folder)
    try:
        stack.prepare_host()
        stack.compose("up", "-d", "--build", timeout=1800)
        stack.wait_healthy()
        yield stack
    finally:
        stack.wipe()


def _instance_mark() -> str:
    """The apps the stack's platform started on this host's engine belong to no compose project: they carry the
    platform's own mark (a hash of its data dir in the container)."""
    from spacehub.settings import Settings
    from spacehub_runner.runtimes.docker import INSTANCE, instance_id

    return f"label={INSTANCE}={instance_id(Settings(data_dir=Path('/var/lib/spacehub')))}"  # type: ignore[call-arg]


def app_containers() -> list[dict[str, Any]]:
    ids = subprocess.run(["docker", "ps", "-q", "--filter", _instance_mark()], capture_output=True, text=True,
                         check=True).stdout.split()
    if not ids:
        return []
    return list(json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                          check=True).stdout))


def remove_apps() -> None:
    mark = _instance_mark()
    for kind in ("container", "volume"):
        every = ["-a"] if kind == "container" else []
        listed = subprocess.run(["docker", kind, "ls", "-q", "--filter", mark, *every], capture_output=True, text=True,
                                check=False).stdout.split()
        if listed:
            subprocess.run(["docker", kind, "rm", "-f", *listed], capture_output=True, check=False)


def unmount_under(folder: Path) -> None:
    """The apps' disks the platform left mounted on the host (its mounts propagate there), then the folder's own
    bind mount (prepare-host.sh), deepest first."""
    root = str(folder.resolve())
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mountpoint in sorted((m for m in mounts if m == root or m.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
