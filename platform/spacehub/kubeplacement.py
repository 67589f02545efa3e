"""Where each hardware flavor runs on a cluster: the node selector and tolerations its pods get, whether the
cluster can schedule it at all, and whether its root filesystem is read-only.

The default table places GPU flavors on nodes labelled by NVIDIA's GPU feature discovery
(`nvidia.com/gpu.product`) and lets them tolerate the usual `nvidia.com/gpu` taint; a cluster says which flavors
it can schedule (and overrides any entry) with a YAML file (`SPACEHUB_KUBE_FLAVORS`):

    cpu-basic: {schedulable: true}
    t4-small:  {schedulable: true, node_selector: {cloud.google.com/gke-accelerator: nvidia-tesla-t4}}
    a10g-large: {schedulable: true, read_only_root: false}

Out of the box only CPU flavors are schedulable: a GPU flavor is refused with a clear reason, not left pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from spacehub import hardware
from spacehub.errors import SpaceConfigError
from spacehub.settings import Settings

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"

# Flavor name prefix -> the product name GPU feature discovery puts on the node.
GPU_PRODUCTS = {
    "t4": "Tesla-T4",
    "l4x": "NVIDIA-L4",
    "l40s": "NVIDIA-L40S",
    "a10g": "NVIDIA-A10G",
    "zero-a10g": "NVIDIA-A10G",
    "a100": "NVIDIA-A100-SXM4-80GB",
    "h100": "NVIDIA-H100-80GB-HBM3",
}


@dataclass(frozen=True)
class Placement:
    schedulable: bool
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    read_only_root: bool = True  # the app writes only to /tmp, /var/tmp, ~/.cache and /data


def default_placement(name: str, size: hardware.Flavor) -> Placement:
    if not size.gpus:
        return Placement(schedulable=True)
    product = next((value for prefix, value in sorted(GPU_PRODUCTS.items(), key=lambda kv: -len(kv[0]))
                    if name.startswith(prefix)), None)
    return Placement(
        schedulable=False,
        node_selector={GPU_PRODUCT_LABEL: product} if product else {},
        tolerations=({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},),
    )


def placements(settings: Settings) -> dict[str, Placement]:
    """Every flavor of the hardware table with its placement: the defaults, the cluster's file on top."""
    table = {name: default_placement(name, size) for name, size in hardware.flavors(settings).items()}
    if settings.kube_flavors is not None:
        for name, overrides in _load(Path(settings.kube_flavors)).items():
            if name not in table:
                raise SpaceConfigError(f"kube flavors {settings.kube_flavors}: {name!r} is not in the hardware table")
            table[name] = replace(table[name], **overrides)
    return table


def placement(settings: Settings, name: str | None) -> Placement:
    table = placements(settings)
    return table.get(name or hardware.DEFAULT_FLAVOR) or table[hardware.DEFAULT_FLAVOR]


@cache
def _load(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpaceConfigError(f"kube flavors {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SpaceConfigError(f"kube flavors {path}: must map flavor names to placements")
    known = {"schedulable", "node_selector", "tolerations", "read_only_root"}
    table: dict[str, dict[str, Any]] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not set(entry) <= known:
            raise SpaceConfigError(f"kube flavors {path}: {name!r} takes only {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        if "schedulable" in entry:
            values["schedulable"] = bool(entry["schedulable"])
        if "read_only_root" in entry:
            values["read_only_root"] = bool(entry["read_only_root"])
        if "node_selector" in entry:
            values["node_selector"] = {str(k): str(v) for k, v in dict(entry["node_selector"] or {}).items()}
        if "tolerations" in entry:
            values["tolerations"] = tuple({str(k): str(v) for k, v in dict(t).items()}
                                          for t in entry["tolerations"] or ())
        table[str(name)] = values
    return table
