"""deploy/gpu-check.sh in its CPU dry run: the real allocator picks a stand-in device (SPACEHUB_GPUS=0), the real
process runtime starts the torch app with it, and the app reports what torch sees (no CUDA here).

The GPU machine it is written for has Python and torch but none of spacehub's dependencies; so one run uses an
interpreter with nothing but the standard library for the check, given only the distributions that
deploy/gpu-check/requirements.txt names (and what they require), unpacked in a folder as carried wheels would be.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from support.server import REPO

pytestmark = pytest.mark.timeout(300)

SCRIPT = REPO / "deploy" / "gpu-check.sh"
REQUIREMENTS = REPO / "deploy" / "gpu-check" / "requirements.txt"
OPTIONAL = {"nvidia-ml-py"}  # NVML's inventory; the allocator imports it only if it is there


def run_check(*args: str, python: str = sys.executable, app_python: str = sys.executable,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPACEHUB_") and k != "PYTHONPATH"}
    return subprocess.run(["bash", str(SCRIPT), *args], env={**clean, "PYTHON": python, "APP_PYTHON": app_python,
                                                             **(env or {})},
                          capture_output=True, text=True, timeout=240)


def distributions_needed() -> set[str]:
    """The distributions requirements.txt names, and everything they require (this interpreter's markers)."""
    todo = [Requirement(line).name for line in REQUIREMENTS.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    seen: set[str] = set()
    while todo:
        name = todo.pop().lower()
        if name in seen:
            continue
        if name in OPTIONAL:
            continue
        seen.add(name)
        for raw in metadata.distribution(name).requires or []:
            requirement = Requirement(raw)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def unpack_like_wheels(names: set[str], site: Path) -> None:
    """Copy each distribution's installed files into `site`: what unpacking its wheel gives."""
    for name in names:
        dist = metadata.distribution(name)
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if not source.is_file() or ".." in file.parts:  # scripts in bin/ and the like
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_dry_run_shows_the_allocators_choice_and_what_the_space_sees() -> None:
    result = run_check("--dry-run")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "inventory (dry run: SPACEHUB_GPUS=0 stands in for a device): 0" in out
    assert "gpu-check/torch (t4-small, 1 GPU) -> device 0" in out
    assert "a second t4-small space -> waits" in out  # one device, so never shared
    # Both ways the process runtime starts an app: forked from the environment's fork-server, and plainly.
    assert "started: forked by the environment's fork-server" in out
    assert "started: plain `python app.py`" in out
    assert out.count("CUDA_VISIBLE_DEVICES: 0") == 2  # the runtime handed the space the allocator's device
    assert out.count("cuda_available: False") == 2
    assert out.count("float32 on cpu") == 2
    assert "DRY RUN PASSED" in out


def test_the_allocator_spreads_spaces_over_the_devices() -> None:
    result = run_check("--dry-run", env={"SPACEHUB_GPUS": "0,1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gpu-check/torch (t4-small, 1 GPU) -> device 0" in result.stdout
    assert "a second t4-small space -> device 1 (never the same card)" in result.stdout
    assert "inventory (SPACEHUB_GPUS): 0, 1" in result.stdout


def test_runs_with_only_the_carried_packages_beside_the_standard_library(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = str(bare / "bin" / "python")

    without = run_check("--dry-run", "--wheels", str(tmp_path / "no-wheels"), python=python)
    assert without.returncode == 1
    assert "is not importable and no wheels are in" in without.stderr
    assert "fetch-wheels.sh" in without.stderr

    site = tmp_path / "site"
    unpack_like_wheels(distributions_needed(), site)
    assert not (site / "gradio").exists() and not (site / "fastapi").exists()
    result = run_check("--dry-run", "--site", str(site), python=python)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"check: {python}" in result.stdout
    assert "DRY RUN PASSED" in result.stdout
