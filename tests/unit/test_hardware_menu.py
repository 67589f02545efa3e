"""The web UI's hardware menu offers what this install can run; the rest carries the reason it cannot."""

from __future__ import annotations

from pathlib import Path

from spacehub import hardware
from spacehub.settings import load_settings


def test_without_gpus_every_gpu_flavor_is_greyed_with_its_reason(tmp_path: Path) -> None:
    menu = dict(hardware.menu(load_settings(data_dir=tmp_path, gpus="")))
    assert menu["cpu-basic"] is None and menu["cpu-upgrade"] is None
    assert menu["t4-small"] == "needs 1 GPU; this install has no GPU"
    assert menu["a100x4"] == "needs 4 GPUs; this install has no GPU"
    assert [name for name, why in menu.items() if why is None] == ["cpu-basic", "cpu-upgrade", "cpu-performance",
                                                                  "cpu-xl"]


def test_with_two_gpus_the_flavors_of_up_to_two_are_offered(tmp_path: Path) -> None:
    menu = dict(hardware.menu(load_settings(data_dir=tmp_path, gpus="0,1")))
    assert menu["t4-small"] is None and menu["a10g-largex2"] is None
    assert menu["l4x4"] == "needs 4 GPUs; this install has 2 GPUs"
