"""Hardware flavors in the Hub's vocabulary, mapped to what a space gets here: CPUs, memory and GPU devices.

The default table holds the Hub's own sizes (vCPUs, memory GB, GPU count). A deployment overrides or extends it
with a YAML file (`SPACEHUB_HARDWARE_TABLE`):

    cpu-basic:  {cpus: 2, memory_gb: 16, disk_gb: 50}
    t4-small:   {cpus: 4, memory_gb: 15, gpus: 1}

Container limits are these sizes times `SPACEHUB_DOCKER_CPU_SCALE` / `SPACEHUB_DOCKER_MEMORY_SCALE` (so a small
host can still offer the Hub's names); the GPU count is never scaled: it is how many devices the allocator hands
the space. `disk_gb` (default 50, the Hub's ephemeral disk) caps a container's writable disk (/tmp, its home and
working directory; spacehub_runner.diskcap) and is not scaled either.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from spacehub.errors import InvalidInput, SpaceConfigError
from spacehub.settings import Settings

DEFAULT_FLAVOR = "cpu-basic"


@dataclass(frozen=True)
class Flavor:
    cpus: float
    memory_gb: float
    gpus: int = 0
    disk_gb: float = 50.0  # a container's writable disk (/tmp, home, working directory): the Hub's 50 GB


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


def check(settings: Settings, name: str) -> str:
    """The flavor's name if the table in force has it: what the API, the web UI and the runner all accept."""
    table = flavors(settings)
    if name not in table:
        raise InvalidInput(f"hardware must be one of {', '.join(table)} (got {name!r})")
    return name


def flavor(settings: Settings, name: str | None) -> Flavor:
    table = flavors(settings)
    return table.get(name or DEFAULT_FLAVOR) or table[DEFAULT_FLAVOR]


# GPU models the Hub's flavor names stand for (what `GET /api/spaces/hardware` reports).
_GPU_MODELS = {"t4": ("T4", "16 GB"), "l4": ("L4", "24 GB"), "l40s": ("L40S", "48 GB"), "a10g": ("A10G", "24 GB"),
               "a100": ("A100", "80 GB"), "h100": ("H100", "80 GB"), "zero": ("H200", "70 GB")}


def gpu_count(settings: Settings) -> int:
    """GPU devices this install can hand out: SPACEHUB_GPUS, else what NVML reports (0 without NVML)."""
    if settings.gpus is not None:
        return len(settings.gpus)
    try:
        import pynvml  # the optional `nvidia-ml-py` distribution
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def _cluster_refusals(settings: Settings) -> dict[str, str] | None:
    """On Kubernetes, the flavors the cluster cannot schedule, each with why (SPACEHUB_KUBE_FLAVORS); else None
    (GPU counts decide)."""
    if settings.runtime != "kubernetes":
        return None
    from spacehub.kubeplacement import placements

    return {name: "this cluster cannot schedule it (SPACEHUB_KUBE_FLAVORS)"
            for name, place in placements(settings).items() if not place.schedulable}


def hub_listing(settings: Settings) -> list[dict[str, object]]:
    """The flavors this install can run (enough GPUs for it), in the Hub's `list_spaces_hardware` shape."""
    refused = _cluster_refusals(settings)
    gpus = gpu_count(settings) if refused is None else 0
    listed: list[dict[str, object]] = []
    for name, size in flavors(settings).items():
        if (name in refused) if refused is not None else size.gpus > gpus:
            continue
        accelerator = None
        if size.gpus:
            model, vram = next((value for prefix, value in _GPU_MODELS.items() if name.startswith(prefix)),
                               ("GPU", "unknown"))
            accelerator = {"type": "gpu", "model": model, "quantity": str(size.gpus), "vram": vram,
                           "manufacturer": "Nvidia"}
        listed.append({"name": name, "prettyName": name, "cpu": f"{size.cpus:g} vCPU",
                       "ram": f"{size.memory_gb:g} GB", "accelerator": accelerator,
                       "unitCostMicroUSD": 0, "unitCostUSD": 0.0, "unitLabel": "hour"})
    return listed


def menu(settings: Settings) -> list[tuple[str, str | None]]:
    """The hardware menu of the web UI: each flavor of the table with None when this install can run it, else
    the reason it cannot (shown greyed out with that reason)."""
    refused = _cluster_refusals(settings)
    gpus = gpu_count(settings) if refused is None else 0
    choices: list[tuple[str, str | None]] = []
    for name, size in flavors(settings).items():
        if refused is not None:
            choices.append((name, refused.get(name)))
        elif size.gpus > gpus:
            have = f"{gpus} GPU" + ("s" if gpus != 1 else "") if gpus else "no GPU"
            choices.append((name, f"needs {size.gpus} GPU{'s' if size.gpus > 1 else ''}; this install has {have}"))
        else:
            choices.append((name, None))
    return choices


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
            raise SpaceConfigError(f"hardware table {path}: {name!r} needs cpus and memory_gb (gpus and disk_gb "
                                   "optional)")
        table[str(name)] = Flavor(float(size["cpus"]), float(size["memory_gb"]), int(size.get("gpus", 0)),
                                  float(size.get("disk_gb", 50.0)))
    return table
