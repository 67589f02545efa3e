"""Helpers shared by the docker tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacehub_runner.plugs import Artifact, BuildPlan, RunSpec

DOCKER = "/usr/bin/docker"
GRADIO = "6.31.0"
TEST_SPACE_IDS = range(990_000, 990_100)  # space ids of the containers these tests create, removed at the end
TIMINGS: dict[str, float] = {}

HELLO_APP = """\
import gradio as gr
import spacehub_hello_dep


def greet(name):
    return f"{spacehub_hello_dep.GREETING}, {name}!"


gr.Interface(greet, "text", "text").launch()
"""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


def record(name: str, seconds: float) -> None:
    TIMINGS[name] = round(seconds, 1)


class Log:
    """A build log sink that keeps the lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Built:
    artifact: Artifact
    plan: BuildPlan
    tree: Path
    log: Log


def hello_plan(**overrides: Any) -> BuildPlan:
    fields: dict[str, Any] = {
        "recipe": "gradio",
        "python_version": "3.11",
        "sdk_version": GRADIO,
        "app_file": "app.py",
        "requirements": ("spacehub-hello-dep==1.0",),  # only in the local find-links folder
        "apt_packages": ("netcat-openbsd",),
    }
    fields.update(overrides)
    return BuildPlan(**fields)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run_spec(space_id: int, plan: BuildPlan, **overrides: Any) -> RunSpec:
    fields: dict[str, Any] = {
        "space_id": space_id,
        "space_key": f"tests/space-{space_id}",
        "revision": hashlib.sha1(str(space_id).encode()).hexdigest(),
        "plan": plan,
        "env": {"SPACE_ID": f"tests/space-{space_id}", "HF_ENDPOINT": "http://localhost:8000"},
    }
    fields.update(overrides)
    return RunSpec(**fields)


def make_wheel(folder: Path) -> None:
    """A tiny pure-Python wheel, served to builds from a *local* find-links folder."""
    name, version = "spacehub_hello_dep", "1.0"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": b'GREETING = "hello from a local wheel"\n',
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: spacehub-hello-dep\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(data)}")
    record_lines.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, data in files.items():
            whl.writestr(path, data)


def instance_label(data_dir: Path) -> str:
    """The `spacehub.instance` label of the containers and volumes of the platform living in `data_dir`."""
    from spacehub.settings import Settings
    from spacehub_runner.runtimes.docker import instance_id

    return f"spacehub.instance={instance_id(Settings(data_dir=data_dir))}"


def instance_containers(data_dir: Path, *, all_states: bool = True) -> list[str]:
    """Ids of that platform's containers (running, or all)."""
    args = ["ps", "-q", "--no-trunc", "--filter", f"label={instance_label(data_dir)}"]
    return docker(*args, *(["-a"] if all_states else [])).stdout.split()


def remove_instance(data_dir: Path) -> None:
    """Remove whatever containers and volumes a platform under test left (they outlive it by design)."""
    ids = instance_containers(data_dir)
    if ids:
        docker("rm", "-f", *ids, check=False)
    volumes = docker("volume", "ls", "-q", "--filter", f"label={instance_label(data_dir)}").stdout.split()
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)
    # The containers' capped disks (spacehub_runner.diskcap): loop filesystems mounted under the data dir.
    disks = str(data_dir.resolve() / "disks") + "/"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mountpoint = line.split()[1]
        if mountpoint.startswith(disks):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)


def inspect(container_id: str) -> dict[str, Any]:
    return dict(json.loads(docker("inspect", container_id).stdout)[0])


def inspect_existing(container_ids: list[str]) -> list[dict[str, Any]]:
    """`docker inspect` of those containers that still exist (one may be removed between listing and now)."""
    found = []
    for container_id in container_ids:
        result = docker("inspect", container_id, check=False)
        if result.returncode == 0:
            found.append(json.loads(result.stdout)[0])
    return found
