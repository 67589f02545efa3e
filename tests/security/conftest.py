"""Fixtures for the sandbox tests: a real dockerd with spacehub's sandbox installed (as `make test`'s setup does),
the probe image (tests/security/probe), and containers started by the real Docker runtime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from probekit import SPACE_IDS, docker

from spacehub.settings import Settings
from spacehub_runner import images
from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.runtimes.docker import DockerRuntime
from support.sandbox import ensure_installed, sandbox_settings


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
