"""The GPU allocator: which specific devices a GPU space gets (never "count=N", which hands every space the
same card), kept in SQL so every worker and the supervisor see one truth.

Inventory: `SPACEHUB_GPUS` (e.g. `0,1`) when set, else the devices NVML reports (`nvidia-ml-py`, optional).
Each device has `SPACEHUB_GPU_SHARE` slots (default 1: a device belongs to one space at a time). A hold is a
`GpuAllocation` row; the unique (device, slot) constraint settles races between workers: the loser of an insert
race retries on what is left. Holds are released when the space stops, sleeps, fails or is deleted (its rows
also cascade with the space row).

A space that finds no free device waits in APP_STARTING with `WAITING_MESSAGE`; the supervisor (and every
release) starts the longest-waiting one that now fits.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Sequence
from functools import cache

import redis
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, OperationalError

from spacehub import hardware
from spacehub.queue import OPS, enqueue
from spacehub.settings import Settings
from spacehub.stages import Stage
from spacehub.store.db import Database
from spacehub.store.models import GpuAllocation, Space

log = logging.getLogger("spacehub.gpus")

# The start of a waiting space's message: the supervisor finds waiting spaces by it (stage APP_STARTING).
WAITING_MESSAGE = "waiting for a free GPU"
_RACE_RETRIES = 20


def inventory(settings: Settings) -> list[str]:
    """The device ids this platform may hand out."""
    if settings.gpus is not None:
        return list(dict.fromkeys(settings.gpus))
    return list(_nvml_devices())


@cache
def _nvml_devices() -> tuple[str, ...]:
    """Device indices NVML reports; none where the library or a driver is missing. Asked once per process."""
    try:
        import pynvml  # the `nvidia-ml-py` distribution; optional
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver: a machine without GPUs
        return ()
    try:
        return tuple(str(i) for i in range(pynvml.nvmlDeviceGetCount()))
    finally:
        pynvml.nvmlShutdown()


def gpus_needed(settings: Settings, hardware_name: str | None) -> int:
    """Devices this platform must hand the space itself: none on Kubernetes, whose scheduler places the pod on a
    node with free `nvidia.com/gpu` (the pod asks for them; spacehub_runner.kube.objects)."""
    if settings.runtime == "kubernetes":
        return 0
    return hardware.flavor(settings, hardware_name).gpus


def new_lease(revision: str) -> str:
    return f"{revision[:12]}-{secrets.token_hex(4)}"


def waiting_message(need: int, total: int) -> str:
    return f"{WAITING_MESSAGE}: needs {need}, all {total} in use; it starts when one frees up"


class GpuAllocator:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.devices = inventory(settings)
        self.share = settings.gpu_share

    def acquire(self, space_id: int, lease: str, count: int) -> list[str] | None:
        """Hold `count` distinct devices for `lease`; None when not enough are free right now."""
        if count <= 0:
            return []
        for _ in range(_RACE_RETRIES):
            try:
                with self.db.session() as session:
                    used = self._used_slots(session.scalars(select(GpuAllocation)).all())
                    free = [d for d in self.devices if len(used[d]) < self.share]
                    if len(free) < count:
                        return None
                    # Least-shared devices first, then inventory order: spread spaces over the cards.
                    chosen = sorted(free, key=lambda d: (len(used[d]), self.devices.index(d)))[:count]
                    for device in chosen:
                        slot = min(set(range(self.share)) - used[device])
                        session.add(GpuAllocation(space_id=space_id, lease=lease, device=device, slot=slot))
                    session.flush()
                return chosen
            except (IntegrityError, OperationalError) as exc:
                # Another worker took a slot first (unique constraint), or SQLite refused our snapshot's write
                # because one committed meanwhile: read again and retry.
                log.info("GPU allocation race for space %s (%s); trying again", space_id, type(exc).__name__)
                time.sleep(random.uniform(0.01, 0.05))
        return None

    def release(self, space_id: int, *, lease: str | None = None, keep: str | None = None) -> None:
        """Free the space's holds: one lease's, or all but `keep`'s, or all."""
        query = delete(GpuAllocation).where(GpuAllocation.space_id == space_id)
        if lease is not None:
            query = query.where(GpuAllocation.lease == lease)
        if keep is not None:
            query = query.where(GpuAllocation.lease != keep)
        with self.db.session() as session:
            session.execute(query)

    def held(self, space_id: int) -> list[str]:
        with self.db.session() as session:
            return list(session.scalars(select(GpuAllocation.device).where(GpuAllocation.space_id == space_id)))

    def free_devices(self) -> int:
        """Devices with at least one free slot."""
        with self.db.session() as session:
            used = self._used_slots(session.scalars(select(GpuAllocation)).all())
        return sum(1 for d in self.devices if len(used[d]) < self.share)

    def _used_slots(self, rows: Sequence[GpuAllocation]) -> dict[str, set[int]]:
        used: dict[str, set[int]] = {d: set() for d in self.devices}
        for row in rows:
            if row.device in used:  # a device dropped from the inventory holds nothing any more
                used[row.device].add(row.slot)
        return used


def start_waiting_spaces(settings: Settings, db: Database, redis_conn: redis.Redis) -> list[int]:
    """Enqueue a start for waiting GPU spaces, oldest first, while free devices last; return their ids."""
    allocator = GpuAllocator(settings, db)
    free = allocator.free_devices()
    if free == 0:
        return []
    started = []
    with db.session() as session:
        waiting = session.scalars(
            select(Space).where(Space.stage == Stage.APP_STARTING, Space.handle.is_(None),
                                Space.message.startswith(WAITING_MESSAGE)).order_by(Space.updated_at, Space.id)
        ).all()
        for space in waiting:
            need = gpus_needed(settings, space.hardware)
            if need > free:
                break  # first come, first served: a big space is not starved by small ones
            free -= need
            # No longer "waiting": the next tick must not enqueue it again while this start is on its way.
            space.message = "starting: a GPU is free"
            started.append(space.id)
    for space_id in started:
        enqueue(redis_conn, OPS, "spacehub_runner.jobs.start", space_id, False)
    return started
