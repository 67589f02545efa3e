"""Every role that starts containers checks the sandbox at start, not only `spacehub serve`.

`spacehub worker` (its jobs build and start containers) and `spacehub supervisor` (it restarts and re-adopts them),
started on their own on the Docker runtime, refuse to run when the sandbox is missing (here: a space network that
does not exist), naming what is missing and the command that installs it. The control: the same commands with
the sandbox that `make test` installed get past the check (the worker drains its empty queues and exits 0; the
supervisor's health listener, which starts after the check, answers).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.faults import RedisServer, Role, wait_for
from support.server import SANDBOX_TEST_PORTS, free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

REFUSAL = "refusing to run the Docker runtime"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("role-redis"))
    server.start()
    yield server
    server.stop()


def _env(data_dir: Path, redis_url: str, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPACEHUB_")}
    env.update({
        "SPACEHUB_DATA_DIR": str(data_dir),
        "SPACEHUB_REDIS_URL": redis_url,
        "SPACEHUB_RUNTIME": "docker",
        # The ports the test sandbox is installed with (support.sandbox.sandbox_settings).
        "SPACEHUB_DOCKER_GATEWAY_PORTS": f"{SANDBOX_TEST_PORTS.start}-{SANDBOX_TEST_PORTS.stop - 1}",
        "SPACEHUB_DATABASE_URL": f"sqlite:///{data_dir / 'spacehub.db'}",
        **{f"SPACEHUB_{key.upper()}": value for key, value in settings.items()},
    })
    return env


def _spacehub(*args: str) -> list[str]:
    return [sys.executable, "-m", "spacehub", *args]


@pytest.mark.parametrize("role", [["worker", "--burst"], ["supervisor"]], ids=["worker", "supervisor"])
def test_a_role_refuses_the_docker_runtime_without_its_sandbox(installed: None, redis_server: RedisServer,
                                                              tmp_path: Path, role: list[str]) -> None:
    env = _env(tmp_path / "data", redis_server.url, docker_network=f"spacehub-absent-{secrets.token_hex(3)}")
    done = subprocess.run(_spacehub(*role), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stdout + done.stderr
    assert REFUSAL in done.stderr
    assert "does not exist" in done.stderr
    assert "spacehub sandbox install" in done.stderr


def test_the_worker_starts_with_its_sandbox(installed: None, redis_server: RedisServer, tmp_path: Path) -> None:
    env = _env(tmp_path / "data", redis_server.url)
    done = subprocess.run(_spacehub("worker", "--burst", "--queue", f"empty-{secrets.token_hex(3)}"), env=env,
                          capture_output=True, text=True, timeout=120)
    assert REFUSAL not in done.stderr
    assert done.returncode == 0, done.stderr


def test_the_supervisor_starts_with_its_sandbox(installed: None, redis_server: RedisServer, tmp_path: Path) -> None:
    env = _env(tmp_path / "data", redis_server.url)
    (tmp_path / "data").mkdir()
    port = free_port()
    supervisor = Role("supervisor", ["supervisor", "--health", f"127.0.0.1:{port}"], env, tmp_path)
    try:
        def health() -> int | None:
            assert supervisor.process.poll() is None, "the supervisor exited"
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code

        wait_for("the supervisor's health listener", health, 120)
    finally:
        supervisor.close()
    output = supervisor.log.read_text()
    assert REFUSAL not in output
