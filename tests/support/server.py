"""A real `spacehub serve` in a subprocess, for integration and end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from support import pg

ADMIN_TOKEN = "sh_test_admin_token_0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "spaces_examples"


class PortTaken(Exception):
    pass


# Public ports of platforms under test that run the Docker runtime: the sandbox's egress rules let containers
# reach only the platform's public port on the bridge gateways, so tests install this range as
# SPACEHUB_DOCKER_GATEWAY_PORTS (tests/sandboxkit.py) and take their ports from it. Below the kernel's ephemeral
# range, so that no random port of another test lands in it.
SANDBOX_TEST_PORTS = range(28100, 28200)


def free_port(ports: range | None = None) -> int:
    """A free port: any (the kernel's pick), or a random free one of `ports`."""
    candidates = random.sample(ports, len(ports)) if ports is not None else [0]
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no free port in {ports}")


class Server:
    def __init__(self, data_dir: Path, **settings: str) -> None:
        self.data_dir = data_dir
        self.ports = SANDBOX_TEST_PORTS if settings.get("runtime") in ("docker", "auto") else None
        self.port = free_port(self.ports)
        self.url = f"http://localhost:{self.port}"
        self.token = ADMIN_TOKEN
        self.env = {
            **os.environ,
            "SPACEHUB_DATA_DIR": str(data_dir),
            "SPACEHUB_PORT": str(self.port),
            "SPACEHUB_ADMIN_TOKEN": ADMIN_TOKEN,
            "SPACEHUB_RECONCILE_INTERVAL_S": "1",
            "SPACEHUB_READY_TIMEOUT_S": "120",
            "SPACEHUB_URL": self.url,
            "SPACEHUB_TOKEN": ADMIN_TOKEN,
            "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv")),
            "PYTHONUNBUFFERED": "1",
            # Tests that look at apps directly (docker exec, /proc) must not race the idle freeze; the lifecycle
            # tests set their own short timings.
            "SPACEHUB_FREEZE_AFTER_S": "3600",
            # SQLite under the data dir, or a fresh PostgreSQL database on a `--db postgres` run.
            "SPACEHUB_DATABASE_URL": pg.database_url(data_dir / "spacehub.db"),
            # Every test comes from 127.0.0.1: the rate limits are tested where a test sets them
            # (tests/security/test_rate_limits.py), and stay out of the way of the others.
            **{f"SPACEHUB_RATE_LIMIT_{kind}": "off" for kind in ("SIGNIN_ADDRESS", "SIGNIN_ACCOUNT", "INVALID_TOKEN",
                                                                 "SIGNUP", "WRITES", "BUILDS")},
            # A stage move the transition table forbids is a bug: fail loudly in every test platform.
            "SPACEHUB_STRICT_TRANSITIONS": "true",
            **{f"SPACEHUB_{k.upper()}": v for k, v in settings.items()},
        }
        self.env.pop("SPACEHUB_REDIS_URL", None)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "serve.log"
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60,
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Host": f"localhost:{self.port}"})

    def start(self, timeout: float = 120) -> None:
        for _attempt in range(3):
            try:
                return self._start(timeout)
            except PortTaken:
                # Another process took the free port between our probe and serve's bind: pick another.
                self.port = free_port(self.ports)
                self.url = f"http://localhost:{self.port}"
                self.env.update(SPACEHUB_PORT=str(self.port), SPACEHUB_URL=self.url)
                self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60,
                                        headers=dict(self.api.headers))
        raise RuntimeError("no free port for spacehub serve")

    def _start(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen([sys.executable, "-m", "spacehub", "serve"], env=self.env, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self.log.read_text()[-2000:]:
                    raise PortTaken(self.port)
                raise RuntimeError(f"spacehub serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if self.api.get("/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"spacehub serve did not answer:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def kill_apps(self) -> None:
        kill_apps(self.data_dir)

    def cli(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "spacehub", *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"spacehub {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}\n--- serve log ---\n"
                                 f"{self.log.read_text()[-4000:]}")
        return result

    def space_handle(self, repo_id: str) -> dict[str, Any] | None:
        """The space's runtime handle as SQL has it (None: no app), read from whichever database the platform uses."""
        from sqlalchemy import create_engine, select

        from spacehub.store.models import Space

        owner, name = repo_id.split("/")
        engine = create_engine(self.env["SPACEHUB_DATABASE_URL"])
        try:
            with engine.connect() as conn:
                return conn.execute(select(Space.handle).where(Space.owner == owner, Space.name == name)).scalar()
        finally:
            engine.dispose()

    def host(self, label: str) -> str:
        return f"{label}.space.localhost:{self.port}"

    def space_url(self, label: str) -> str:
        return f"http://{self.host(label)}"

    def space_get(self, label: str, path: str = "/", **kwargs: object) -> httpx.Response:
        """GET through the proxy with the space's Host header (works without *.localhost name resolution)."""
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60) as client:
            return client.get(path, headers={"Host": self.host(label)}, **kwargs)  # type: ignore[arg-type]

    def wait_stage(self, repo_id: str, stages: set[str], timeout: float = 300) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        runtime: dict[str, object] = {}
        while time.monotonic() < deadline:
            runtime = self.api.get(f"/api/spaces/{repo_id}/runtime").json()
            if runtime.get("stage") in stages:
                return runtime
            time.sleep(0.3)
        raise AssertionError(f"{repo_id} never reached {stages}: {runtime}\n{self.log.read_text()[-3000:]}")


def kill_apps(data_dir: Path) -> None:
    """Apps and fork-servers live in their own sessions, outliving serve (and the roles) by design, for
    re-adoption: tests clean them up here."""
    for pid in app_pids(data_dir) + fork_server_pids(data_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def app_pids(data_dir: Path) -> list[int]:
    return _pids_in(data_dir / "apps")  # an app's working folder is its checkout


def fork_server_pids(data_dir: Path) -> list[int]:
    """The fork-servers of the process runtime: each works in run/forkservers/<env hash>.home."""
    return _pids_in(data_dir / "run" / "forkservers")


def _pids_in(folder: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(folder)):
            pids.append(int(entry.name))
    return pids
