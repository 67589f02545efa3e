"""GPU spaces on the docker runtime, with SPACEHUB_GPUS=0,1 standing in for NVML.

No NVIDIA container runtime exists here, so the containers are created (never started) and what Docker was
asked is read back with `docker inspect`: each GPU space gets its own device ids from the allocator (kept in
SQL), never `count=N`; a CPU space gets no device request and NVIDIA_VISIBLE_DEVICES=void.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerkit import Built, inspect, run_spec

from spacehub.settings import Settings
from spacehub.store.db import Database, migrate
from spacehub.store.models import Space
from spacehub_runner.gpus import GpuAllocator
from spacehub_runner.runtimes.docker import DockerRuntime

pytestmark = pytest.mark.docker

GPU_A, GPU_B, GPU_C, CPU = 990_030, 990_031, 990_032, 990_033


@pytest.fixture()
def allocator(settings: Settings, tmp_path: Path) -> GpuAllocator:
    gpu_settings = settings.model_copy(update={"gpus": ["0", "1"], "data_dir": tmp_path})
    migrate(gpu_settings.effective_database_url)
    db = Database(gpu_settings.effective_database_url)
    with db.session() as session:
        for space_id in (GPU_A, GPU_B, GPU_C, CPU):
            session.add(Space(id=space_id, owner="tests", name=f"s{space_id}", key=f"tests/s{space_id}",
                              label=f"tests-s{space_id}"))
    return GpuAllocator(gpu_settings, db)


@pytest.fixture()
def created(runtime: DockerRuntime) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for container_id in ids:
        container = runtime.client.containers.get(container_id)
        container.remove(force=True)
        runtime.release_scratch(str(container.name))  # its capped disk goes with it, as `stop` does


def test_two_gpu_spaces_get_different_device_requests(
    allocator: GpuAllocator, runtime: DockerRuntime, hello: Built, created: list[str]
) -> None:
    first = allocator.acquire(GPU_A, "lease-a", 1)
    second = allocator.acquire(GPU_B, "lease-b", 1)
    assert first is not None and second is not None
    assert sorted(first + second) == ["0", "1"]
    assert allocator.acquire(GPU_C, "lease-c", 1) is None  # both held: a third waits

    requests = {}
    for space_id, ids in ((GPU_A, first), (GPU_B, second), (CPU, [])):
        spec = run_spec(space_id, hello.plan, hardware="t4-small" if ids else "cpu-basic", gpu_ids=tuple(ids))
        container = runtime.create(spec, hello.artifact)
        created.append(container.id)
        info = inspect(container.id)
        requests[space_id] = (info["HostConfig"]["DeviceRequests"], info["Config"]["Env"])

    for space_id, ids in ((GPU_A, first), (GPU_B, second)):
        device_requests, env = requests[space_id]
        assert [r["DeviceIDs"] for r in device_requests] == [ids]
        assert device_requests[0]["Capabilities"] == [["gpu"]] and device_requests[0]["Count"] == 0
        assert f"NVIDIA_VISIBLE_DEVICES={ids[0]}" in env
    cpu_requests, cpu_env = requests[CPU]
    assert not cpu_requests
    assert "NVIDIA_VISIBLE_DEVICES=void" in cpu_env

    allocator.release(GPU_A)  # the space stops: its device is free again, for the waiting one
    assert allocator.acquire(GPU_C, "lease-c", 1) == first

