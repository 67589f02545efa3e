"""Fixtures for the sandbox tests: a real dockerd with spacehub's sandbox installed (as `make test`'s setup does),
the probe image (tests/security/probe), and containers started by the real Docker runtime."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacehub.settings import Settings
from spacehub_runner import images
from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.plugs import Artifact, BuildPlan
from spacehub_runner.runtimes.docker import DockerRuntime
from support.sandbox import ensure_installed, sandbox_settings

DOCKER = "/usr/bin/docker"
PROBE = Path(__file__).parent / "probe" / "probe.py"
SPACE_IDS = range(991_000, 991_100)  # space ids of this suite's containers


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="session")
def installed() -> None:
    if docker("info", check=False).returncode != 0:
        pytest.fail("dockerd is not answering: run deploy/setup/docker.sh (as root) first")
    ensure_installed()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, installed: None) -> Settings:
    return sandbox_settings(data_dir=tmp_path_factory.mktemp("spacehub-sandbox"), build_timeout_s=600,
                         ready_timeout_s=60, stop_grace_s=1)


@pytest.fixture(scope="session")
def base_image(settings: Settings) -> str:
    return images.bootstrap_base(settings, lambda line: None)


@pytest.fixture(scope="session")
def builder(settings: Settings, base_image: str) -> DockerBuilder:
    return DockerBuilder(settings)


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(settings)
    yield rt
    for handle in rt.list_managed():  # whatever a failed test left behind
        if handle.data["space_id"] in SPACE_IDS:
            rt.stop(handle)


def build_probe(builder: DockerBuilder, base_image: str, folder: Path, targets: list[str] = (),
                steps: str = "") -> Artifact:
    """The probe as a `sdk: docker` space; its build step probes `targets` into /probe-build.json."""
    nonce = secrets.token_hex(4)  # a fresh step every time: never an answer from BuildKit's cache
    (folder / "probe.py").write_text(PROBE.read_text())
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\n"
        "COPY probe.py /probe.py\n"
        f"RUN echo {nonce} && python3 /probe.py --connect {' '.join(targets)} > /probe-build.json\n"
        f"{steps}"
        "EXPOSE 7860\n"
        'CMD ["python3", "/probe.py", "--serve", "7860"]\n'
    )
    lines: list[str] = []
    try:
        return builder.build(BuildPlan(recipe="docker"), folder, lines.append)
    except Exception as exc:
        raise AssertionError("probe build failed:\n" + "\n".join(lines[-40:])) from exc


def build_report(artifact: Artifact) -> dict[str, dict[str, str]]:
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "cat", artifact.ref, "/probe-build.json")
    return dict(json.loads(out.stdout))
