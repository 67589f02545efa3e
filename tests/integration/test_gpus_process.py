"""GPU allocation on the process runtime, with SPACEHUB_GPUS=0,1 standing in for NVML (no GPU here).

A real `spacehub serve`, real app processes: each GPU space gets its own device in CUDA_VISIBLE_DEVICES, a CPU
space none; a third GPU space waits (APP_STARTING, saying why) and starts on the device that frees up when
another stops; a GPU space's redeploy with no spare device stops its old revision first.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.server import EXAMPLES, Server, app_pids

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("gpus") / "data", runtime="process", gpus="0,1")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


def _app_env(server: Server) -> dict[str, dict[str, str]]:
    """SPACE_ID -> environment of that space's running app process(es)."""
    found: dict[str, dict[str, str]] = {}
    for pid in app_pids(server.data_dir):
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        if "SPACE_ID" in env:
            found[env["SPACE_ID"]] = env
    return found


def _wait_env(server: Server, space_id: str, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        env = _app_env(server).get(space_id)
        if env is not None:
            return env
        time.sleep(0.3)
    raise AssertionError(f"no app process of {space_id}")


@pytest.fixture(scope="module")
def two_gpu_spaces(server: Server) -> dict[str, str]:
    for name in ("gpu-a", "gpu-b"):
        server.cli("push", str(EXAMPLES / "hello"), f"admin/{name}", "--hardware", "t4-small")
    return {name: _wait_env(server, f"admin/{name}")["CUDA_VISIBLE_DEVICES"] for name in ("gpu-a", "gpu-b")}


def test_two_gpu_spaces_get_different_devices(two_gpu_spaces: dict[str, str]) -> None:
    assert sorted(two_gpu_spaces.values()) == ["0", "1"]


def test_a_cpu_space_sees_no_gpu(server: Server, two_gpu_spaces: dict[str, str]) -> None:
    server.cli("push", str(EXAMPLES / "hello"), "admin/cpu-only")
    assert _wait_env(server, "admin/cpu-only")["CUDA_VISIBLE_DEVICES"] == ""


def test_a_third_gpu_space_waits_then_starts_when_one_stops(server: Server, two_gpu_spaces: dict[str, str]) -> None:
    server.cli("push", str(EXAMPLES / "hello"), "admin/gpu-c", "--hardware", "t4-small", "--no-follow")
    runtime = server.wait_stage("admin/gpu-c", {"APP_STARTING"}, timeout=120)
    deadline = time.monotonic() + 120
    while "waiting for a free GPU" not in str(runtime.get("errorMessage")) and time.monotonic() < deadline:
        time.sleep(0.3)
        runtime = server.api.get("/api/spaces/admin/gpu-c/runtime").json()
    assert runtime["stage"] == "APP_STARTING"
    assert "waiting for a free GPU" in runtime["errorMessage"]
    time.sleep(3)  # a few supervisor ticks: it keeps waiting while both devices are held
    assert server.api.get("/api/spaces/admin/gpu-c/runtime").json()["stage"] == "APP_STARTING"
    assert "admin/gpu-c" not in _app_env(server)

    response = server.api.post("/api/spaces/admin/gpu-a/stop")
    assert response.status_code == 200, response.text
    server.wait_stage("admin/gpu-c", {"RUNNING"}, timeout=120)
    assert _wait_env(server, "admin/gpu-c")["CUDA_VISIBLE_DEVICES"] == two_gpu_spaces["gpu-a"]
    assert "admin/gpu-a" not in _app_env(server)


def test_a_redeploy_without_a_spare_device_stops_the_old_revision_first(
    server: Server, two_gpu_spaces: dict[str, str], tmp_path: Path
) -> None:
    # gpu-b and gpu-c hold both devices now (see the test above).
    changed = tmp_path / "hello"
    shutil.copytree(EXAMPLES / "hello", changed)
    app = changed / "app.py"
    app.write_text(app.read_text().replace('f"Hello {name}!"', 'f"Hey {name}!"'))
    result = server.cli("push", str(changed), "admin/gpu-b")
    assert "No spare GPU" in result.stdout and "stopping it first" in result.stdout
    assert _wait_env(server, "admin/gpu-b")["CUDA_VISIBLE_DEVICES"] == two_gpu_spaces["gpu-b"]
    assert server.space_get("admin-gpu-b").status_code == 200


def test_push_hardware_moves_an_existing_space_off_its_gpu(server: Server, two_gpu_spaces: dict[str, str]) -> None:
    server.cli("push", str(EXAMPLES / "hello"), "admin/gpu-c", "--hardware", "cpu-basic")
    assert server.api.get("/api/spaces/admin/gpu-c/runtime").json()["hardware"]["requested"] == "cpu-basic"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _app_env(server).get("admin/gpu-c", {}).get("CUDA_VISIBLE_DEVICES") != "":
        time.sleep(0.5)
    assert _wait_env(server, "admin/gpu-c")["CUDA_VISIBLE_DEVICES"] == ""
