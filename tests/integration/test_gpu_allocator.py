"""The GPU allocator against a real database (SQLite, or PostgreSQL on `--db postgres`): specific devices,
sharing only when configured, release, and no device handed out twice when workers race (the unique
(device, slot) constraint decides)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from spacehub.settings import Settings
from spacehub.store.db import Database, migrate
from spacehub.store.models import Space
from spacehub_runner.gpus import GpuAllocator, inventory
from support import pg

SPACES = range(1, 9)


def _allocator(tmp_path: Path, **settings: object) -> GpuAllocator:
    settings.setdefault("database_url", pg.database_url(tmp_path / "spacehub.db"))
    config = Settings(data_dir=tmp_path, **settings)  # type: ignore[arg-type]
    migrate(config.effective_database_url)
    db = Database(config.effective_database_url)
    with db.session() as session:
        for space_id in SPACES:
            session.add(Space(id=space_id, owner="t", name=f"s{space_id}", key=f"t/s{space_id}",
                              label=f"t-s{space_id}"))
    return GpuAllocator(config, db)


def test_the_setting_overrides_nvml() -> None:
    assert inventory(Settings(gpus="0,1")) == ["0", "1"]  # type: ignore[arg-type]
    assert inventory(Settings(gpus="")) == []  # type: ignore[arg-type]


def test_each_space_gets_its_own_device_until_none_is_left(tmp_path: Path) -> None:
    allocator = _allocator(tmp_path, gpus="0,1,2")
    assert allocator.acquire(1, "a", 2) == ["0", "1"]
    assert allocator.acquire(2, "b", 2) is None  # only one left: nothing is held half-way
    assert allocator.held(2) == []
    assert allocator.acquire(2, "b", 1) == ["2"]
    assert allocator.free_devices() == 0
    allocator.release(1)
    assert allocator.free_devices() == 2
    assert allocator.acquire(3, "c", 1) == ["0"]


def test_release_of_one_lease_keeps_the_other(tmp_path: Path) -> None:
    allocator = _allocator(tmp_path, gpus="0,1")
    allocator.acquire(1, "old", 1)
    allocator.acquire(1, "new", 1)  # a redeploy beside the running revision, on the spare device
    allocator.release(1, keep="new")
    assert allocator.held(1) == ["1"]


def test_sharing_only_when_configured(tmp_path: Path) -> None:
    allocator = _allocator(tmp_path, gpus="0,1", gpu_share=2)
    assert allocator.acquire(1, "a", 1) == ["0"]
    assert allocator.acquire(2, "b", 1) == ["1"]  # the least-shared device first
    assert allocator.acquire(3, "c", 1) == ["0"]
    assert allocator.acquire(4, "d", 1) == ["1"]
    assert allocator.acquire(5, "e", 1) is None
    allocator.release(1)
    assert allocator.acquire(5, "e", 2) is None  # never the same device twice for one space
    assert allocator.acquire(5, "e", 1) == ["0"]


@pytest.mark.parametrize("share", [1, 2])
def test_racing_workers_never_get_the_same_slot(tmp_path: Path, share: int) -> None:
    allocator = _allocator(tmp_path, gpus="0,1,2", gpu_share=share)
    results: dict[int, list[str] | None] = {}
    barrier = threading.Barrier(len(SPACES))

    def grab(space_id: int) -> None:
        mine = GpuAllocator(allocator.settings, Database(allocator.settings.effective_database_url))
        barrier.wait()
        results[space_id] = mine.acquire(space_id, f"lease-{space_id}", 1)

    threads = [threading.Thread(target=grab, args=(space_id,)) for space_id in SPACES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    granted = [devices[0] for devices in results.values() if devices]
    assert len(granted) == 3 * share  # every slot went to someone...
    assert all(granted.count(device) == share for device in ("0", "1", "2"))  # ...and none to two
