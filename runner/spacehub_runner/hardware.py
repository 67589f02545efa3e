"""Hardware flavors in the Hub's vocabulary, mapped to what a space gets here: CPUs, memory and GPU devices.

The default table holds the Hub's own sizes (vCPUs, memory GB, GPU count). A deployment overrides or extends it
with a YAML file (`SPACEHUB_HARDWARE_TABLE`):

    cpu-basic:  {cpus: 2, memory_gb: 16}
    t4-small:   {cpus: 4, memory_gb: 15, gpus: 1}

Container limits are these sizes times `SPACEHUB_DOCKER_CPU_SCALE` / `SPACEHUB_DOCKER_MEMORY_SCALE` (so a small
host can still offer the Hub's names); the GPU count is never scaled: it is how many devices the allocator hands
the space.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from spacehub.errors import SpaceConfigError
from spacehub.settings import Settings

DEFAULT_FLAVOR = "cpu-basic"


@dataclass(frozen=True)
class Flavor:
    cpus: float
    memory_gb: float
    gpus: int = 0


# The Hub's flavors (huggingface_hub.SpaceHardware) and their sizes.
HUB_FLAVORS: dict[str, Flavor] = {
    "cpu-basic": Flavor(2, 16),
    "cpu-upgrade": Flavor(8, 32),
    "cpu-performance": Flavor(32, 256),
    "cpu-xl": Flavor(16, 124),
    "zero-a10g": Flavor(4, 15, 1),
    "t4-small": Flavor(4, 15, 1),
    "t4-medium": Flavor(8, 30, 1),
    "l4x1": Flavor(8, 30, 1),
    "l4x4": Flavor(48, 186, 4),
    "l40sx1": Flavor(8, 62, 1),
    "l40sx4": Flavor(48, 382, 4),
    "l40sx8": Flavor(192, 1534, 8),
    "a10g-small": Flavor(4, 15, 1),
    "a10g-large": Flavor(12, 46, 1),
    "a10g-largex2": Flavor(24, 92, 2),
    "a10g-largex4": Flavor(48, 184, 4),
    "a100-large": Flavor(12, 142, 1),
    "a100x4": Flavor(48, 568, 4),
    "a100x8": Flavor(96, 1136, 8),
    "h100": Flavor(23, 240, 1),
}


def flavors(settings: Settings) -> dict[str, Flavor]:
    """The table in force: the Hub's, with the deployment's file (if any) on top."""
    if settings.hardware_table is None:
        return dict(HUB_FLAVORS)
    return {**HUB_FLAVORS, **_load_table(Path(settings.hardware_table))}


def flavor(settings: Settings, name: str | None) -> Flavor:
    table = flavors(settings)
    return table.get(name or DEFAULT_FLAVOR) or table[DEFAULT_FLAVOR]


@cache
def _load_table(path: Path) -> dict[str, Flavor]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpaceConfigError(f"hardware table {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SpaceConfigError(f"hardware table {path}: must map flavor names to sizes")
    table = {}
    for name, size in data.items():
        if not isinstance(size, dict) or not {"cpus", "memory_gb"} <= size.keys():
            raise SpaceConfigError(f"hardware table {path}: {name!r} needs cpus and memory_gb (gpus optional)")
        table[str(name)] = Flavor(float(size["cpus"]), float(size["memory_gb"]), int(size.get("gpus", 0)))
    return table
