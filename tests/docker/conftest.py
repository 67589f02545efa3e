"""Fixtures for tests against a real dockerd (started by deploy/setup/docker.sh).

The base and SDK images are bootstrapped once per session and reused when already present (the slow part:
debootstrap about 45 s, the SDK image about 10-15 s). Timings are printed in the terminal summary.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerkit import (
    GRADIO,
    HELLO_APP,
    TEST_SPACE_IDS,
    TIMINGS,
    Built,
    Log,
    docker,
    hello_plan,
    make_wheel,
    record,
    write_tree,
)

from spacehub.settings import Settings
from spacehub_runner import images
from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.dockeropts import DockerOptions
from spacehub_runner.plugs import Artifact, BuildPlan
from spacehub_runner.runtimes.docker import DockerRuntime
from support.sandbox import ensure_installed


@pytest.fixture(scope="session")
def docker_ready() -> None:
    if docker("info", check=False).returncode != 0:
        pytest.fail("dockerd is not answering: run deploy/setup/docker.sh (as root) first")
    # The runtime's network and egress rules, with the test platforms' port range (as `make test` sets up).
    ensure_installed()


@pytest.fixture(scope="session")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    make_wheel(folder)
    return folder


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, wheel_dir: Path, docker_ready: None) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("spacehub-data"),
        pip_find_links=[str(wheel_dir)],
        default_gradio_version=GRADIO,
        build_timeout_s=900,
        ready_timeout_s=120,
        stop_grace_s=2,
    )


def _present(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


@pytest.fixture(scope="session")
def sdk_image(settings: Settings) -> str:
    opts = DockerOptions.from_settings(settings)
    suffix = " (already present)" if _present(opts.base_image_for("3.11")) else ""
    t0 = time.monotonic()
    images.bootstrap_base(settings, Log())
    record("base bootstrap" + suffix, time.monotonic() - t0)
    suffix = " (already present)" if _present(images.sdk_image_ref(opts, "3.11", GRADIO)) else ""
    t0 = time.monotonic()
    ref = images.ensure_sdk_image(settings, "3.11", GRADIO, Log())
    record("SDK image build" + suffix, time.monotonic() - t0)
    return ref


@pytest.fixture(scope="session")
def base_image(settings: Settings, sdk_image: str) -> str:
    return DockerOptions.from_settings(settings).base_image_for("3.11")


@pytest.fixture(scope="session")
def builder(settings: Settings, sdk_image: str) -> DockerBuilder:
    return DockerBuilder(settings)


@pytest.fixture(scope="session")
def hello(builder: DockerBuilder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The hello gradio space, built once per session (the first build is timed)."""
    # A fresh README each session: a real build every time (its layers may come from BuildKit's cache).
    readme = f"# hello {secrets.token_hex(4)}\n"
    tree = write_tree(tmp_path_factory.mktemp("hello"), {"app.py": HELLO_APP, "README.md": readme})
    plan = hello_plan()
    log = Log()
    t0 = time.monotonic()
    artifact = builder.build(plan, tree, log)
    cached = sum(1 for line in log.lines if line.endswith(" CACHED")) >= 3
    record("hello build, first" + (" (layers cached)" if cached else ""), time.monotonic() - t0)
    yield Built(artifact, plan, tree, log)
    docker("rmi", artifact.ref, check=False)  # its layers stay cached; only this session's tag goes


@pytest.fixture(scope="session")
def http_image(builder: DockerBuilder, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """A tiny docker-SDK space: Python's http.server on 7860 (starts in well under a second)."""
    tree = write_tree(
        tmp_path_factory.mktemp("http"),
        {"Dockerfile": f'FROM {base_image}\nWORKDIR /tmp\nCMD ["python3", "-m", "http.server", "7860"]\n'},
    )
    return builder.build(BuildPlan(recipe="docker"), tree, Log())


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(settings)
    yield rt
    for handle in rt.list_managed():  # whatever a failed test left behind
        if handle.data["space_id"] in TEST_SPACE_IDS:
            rt.stop(handle)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("docker timings (seconds)")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:45s} {seconds:7.1f}")
