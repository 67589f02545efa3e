"""The production stack of deploy/compose/ brought up from this repo with Debian's docker-compose: PostgreSQL,
Redis, spacehub's roles as services of their own and Caddy (TLS from its internal CA). A space is pushed over
HTTPS with huggingface_hub, served at https://<label>.<spaces domain> through Caddy and called with
gradio_client; `down` and `up` keep everything, and the stack's PostgreSQL holds it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.server import EXAMPLES, REPO

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yml"
PREPARE_HOST = REPO / "deploy" / "compose" / "prepare-host.sh"
TOKEN = "sh_stack_test_admin_token_0123456789"
PLATFORM_HOST = "hub.localhost"
SPACES_DOMAIN = "spaces.localhost"
# The spacehub services and the role each runs (its container's command).
ROLES = {"api": "api", "proxy": "proxy", "worker-ops": "worker", "worker-builds": "worker",
         "supervisor": "supervisor"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, folder: Path) -> None:
        self.project = f"shstack{os.getpid()}"
        self.https_port = _free_port()
        env = {"POSTGRES_PASSWORD": "stack-pg-password", "REDIS_PASSWORD": "stack-redis-password",
               "SPACEHUB_ADMIN_TOKEN": TOKEN, "PLATFORM_HOST": PLATFORM_HOST, "SPACES_DOMAIN": SPACES_DOMAIN,
               "HTTPS_PORT": str(self.https_port), "HTTP_PORT": str(_free_port()),
               "POSTGRES_PORT": str(_free_port()), "REDIS_PORT": str(_free_port()),
               # The port the host's sandbox lets containers reach (deploy/setup/docker.sh installs it for 8000).
               "SPACEHUB_PORT": "8000", "STACK_TAG": "test",  # one set of images, rebuilt from cache each run
               "SPACEHUB_DISKS_DIR": str(folder / "disks"), "SPACEHUB_API_PORT": str(_free_port()),
               **{f"{name.upper().replace('-', '_')}_HEALTH_PORT": str(_free_port())
                  for name in ROLES if name != "api"}}
        self.disks = folder / "disks"
        self.env_file = folder / "stack.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        self.ca = folder / "caddy-root.pem"
        self.url = f"https://{PLATFORM_HOST}:{self.https_port}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), "--env-file",
                                 str(self.env_file), *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

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

    def client(self, script: str, timeout: float = 900) -> str:
        """Run a client script with only Caddy's internal CA trusted (as a user of this platform would)."""
        env = {**os.environ, "SSL_CERT_FILE": str(self.ca), "REQUESTS_CA_BUNDLE": str(self.ca),
               "HF_HUB_DISABLE_TELEMETRY": "1", "URL": self.url, "TOKEN": TOKEN,
               "SPACE_URL": f"https://admin-hello.{SPACES_DOMAIN}:{self.https_port}",
               "EXAMPLE": str(EXAMPLES / "hello")}
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True,
                                text=True, timeout=timeout)
        assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}\n" + \
            self.compose("logs", "--tail", "30", *ROLES, check=False).stdout[-8000:]
        return result.stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("stack"))
    try:
        # The host side, as the README says: the apps' disks folder on a shared mount.
        subprocess.run([str(PREPARE_HOST), str(stack.disks)], check=True, capture_output=True, timeout=60)
        stack.compose("up", "-d", "--build", timeout=1800)
        stack.wait_healthy()
        yield stack
    finally:
        # The apps the platform started on the host's engine first, then the stack and its volumes.
        stack.compose("exec", "-T", "worker-ops", "spacehub", "stop", check=False, timeout=300)
        stack.compose("down", "-v", check=False, timeout=600)
        _remove_apps()
        _unmount_under(stack.disks)


def _instance_mark() -> str:
    """The apps the stack's platform started on this host's engine belong to no compose project: they carry the
    platform's own mark (a hash of its data dir in the container)."""
    from spacehub.settings import Settings
    from spacehub_runner.runtimes.docker import INSTANCE, instance_id

    return f"label={INSTANCE}={instance_id(Settings(data_dir=Path('/var/lib/spacehub')))}"  # type: ignore[call-arg]


def _app_containers() -> list[dict[str, Any]]:
    ids = subprocess.run(["docker", "ps", "-q", "--filter", _instance_mark()], capture_output=True, text=True,
                         check=True).stdout.split()
    if not ids:
        return []
    return list(json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                          check=True).stdout))


def _remove_apps() -> None:
    mark = _instance_mark()
    for kind in ("container", "volume"):
        every = ["-a"] if kind == "container" else []
        listed = subprocess.run(["docker", kind, "ls", "-q", "--filter", mark, *every], capture_output=True, text=True,
                                check=False).stdout.split()
        if listed:
            subprocess.run(["docker", kind, "rm", "-f", *listed], capture_output=True, check=False)


def _unmount_under(folder: Path) -> None:
    """The apps' disks the platform left mounted on the host (its mounts propagate there), then the folder's own
    bind mount (prepare-host.sh), deepest first."""
    root = str(folder.resolve())
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mountpoint in sorted((m for m in mounts if m == root or m.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)


PUSH_AND_CALL = """
    import os, time
    from huggingface_hub import HfApi
    from gradio_client import Client
    api = HfApi(endpoint=os.environ["URL"], token=os.environ["TOKEN"])
    api.create_repo("admin/hello", repo_type="space", space_sdk="gradio", exist_ok=True)
    api.upload_folder(repo_id="admin/hello", repo_type="space", folder_path=os.environ["EXAMPLE"])
    deadline = time.monotonic() + 600
    while (stage := api.get_space_runtime("admin/hello").stage) != "RUNNING":
        assert stage not in ("BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR"), stage
        assert time.monotonic() < deadline, stage
        time.sleep(2)
    print("HOST", api.space_info("admin/hello").host)
    print("RESULT", Client(os.environ["SPACE_URL"], token=os.environ["TOKEN"]).predict("Ada", api_name="/greet"))
"""

CALL_AGAIN = """
    import os, time
    from huggingface_hub import HfApi
    from gradio_client import Client
    api = HfApi(endpoint=os.environ["URL"], token=os.environ["TOKEN"])
    deadline = time.monotonic() + 600
    while (stage := api.get_space_runtime("admin/hello").stage) != "RUNNING":
        assert time.monotonic() < deadline, stage
        time.sleep(2)
    print("RESULT", Client(os.environ["SPACE_URL"], token=os.environ["TOKEN"]).predict("Bo", api_name="/greet"))
"""


def test_push_over_https_then_call_through_caddy(stack: Stack) -> None:
    out = stack.client(PUSH_AND_CALL)
    assert f"HOST https://admin-hello.{SPACES_DOMAIN}:{stack.https_port}" in out
    assert "RESULT Hello Ada!" in out
    # Each role in a container of its own, running and ready by its own health check (the /ready of its health
    # listener; for the API, its answer); nothing runs `spacehub serve`.
    for service, role in ROLES.items():
        container = stack.container(service)
        assert container["Config"]["Cmd"][0] == role, (service, container["Config"]["Cmd"])
        assert container["State"]["Status"] == "running", (service, container["State"])
        assert container["State"]["Health"]["Status"] == "healthy", (service, container["State"]["Health"])
    assert "spacehub_runner.jobs.build(" in stack.compose("logs", "worker-builds").stdout  # the build ran there
    # The app runs in the whole sandbox: read-only root, writing only to its own capped disk, which the stack's
    # platform mounted under the disks folder and the host (dockerd) sees there.
    (app,) = _app_containers()
    assert app["HostConfig"]["ReadonlyRootfs"] is True
    scratch = str(stack.disks.resolve() / "scratch" / app["Name"].lstrip("/"))
    assert any(line.split()[1] == scratch and line.split()[2] == "ext4"
               for line in Path("/proc/self/mounts").read_text().splitlines()), scratch
    tmp = next(m for m in app["Mounts"] if m["Destination"] == "/tmp")
    device = json.loads(subprocess.run(["docker", "volume", "inspect", tmp["Name"]], capture_output=True,
                                       text=True, check=True).stdout)[0]["Options"]["device"]
    assert device.startswith(scratch + "/"), device


def test_down_and_up_keeps_everything_in_the_stacks_postgres(stack: Stack) -> None:
    stack.compose("down", timeout=600)
    stack.compose("up", "-d", timeout=900)
    stack.wait_healthy()
    rows = stack.compose("exec", "-T", "postgres", "runuser", "-u", "postgres", "--", "psql", "-p",
                         _env(stack, "POSTGRES_PORT"), "-d", "spacehub", "-tAc", "select key from spaces").stdout
    assert "admin/hello" in rows.split()
    assert "RESULT Hello Bo!" in stack.client(CALL_AGAIN)


def _env(stack: Stack, name: str) -> str:
    for line in stack.env_file.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise KeyError(name)
