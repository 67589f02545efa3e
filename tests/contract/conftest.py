"""The runtimes under contract, each with a way to make a fresh runtime object (as a restarted worker would), an
artifact its own builder made, and the abilities it promises.

Every subject runs the same tiny app (CONTRACT_APP; the fake runtime serves the same answers itself): it prints
a line at start, answers every GET with its revision, logs each request, and `GET /exit?code=N` ends it with N.
A new runtime joins by adding a subject here; it is done when tests/contract/ passes for it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from subjects import CONTRACT_APP, Subject, built, write_tree

from spacehub.settings import Settings
from spacehub_runner.fakes import FakeBuilder, FakeHost, FakeRuntime
from spacehub_runner.plugs import Artifact, Builder, BuildPlan
from support.server import fork_server_pids


@pytest.fixture(scope="session")
def fake_subject(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    host = FakeHost()
    plan = BuildPlan(recipe="gradio")
    src = write_tree(tmp_path_factory.mktemp("fake-src"), {"app.py": CONTRACT_APP})
    yield Subject("fake", lambda: FakeRuntime(host), built(FakeBuilder(), plan, src), plan, True, True)
    host.close()


@pytest.fixture(scope="session")
def process_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("contract-process")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UV_CACHE_DIR", os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv"))
        yield data_dir
    # Fork-servers outlive their starters by design (they hold the apps forked from them): end this run's here.
    for pid in fork_server_pids(data_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


@pytest.fixture(scope="session")
def process_env(process_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildPlan, Artifact]:
    """One environment (with gradio, which the fork-server preloads) for both process subjects."""
    from spacehub_runner.builders.process import ProcessBuilder

    # The host's gradio version: uv finds it in a warm cache.
    plan = BuildPlan(recipe="gradio", sdk_version=importlib.metadata.version("gradio"))
    src = write_tree(tmp_path_factory.mktemp("process-src"), {"app.py": CONTRACT_APP})
    settings = Settings(data_dir=process_data_dir, build_timeout_s=600)
    return plan, built(ProcessBuilder(settings), plan, src)


def _process_subject(name: str, data_dir: Path, env: tuple[BuildPlan, Artifact], fork_server: bool) -> Subject:
    from spacehub_runner.runtimes.process import ProcessRuntime

    settings = Settings(data_dir=data_dir, fork_server=fork_server, stop_grace_s=5, ready_timeout_s=90)
    plan, artifact = env
    return Subject(name, lambda: ProcessRuntime(settings), artifact, plan, freezable=True, managed=False,
                   ready_timeout_s=90, expect_data={"forked": fork_server})


@pytest.fixture(scope="session")
def process_subject(process_data_dir: Path, process_env: tuple[BuildPlan, Artifact]) -> Subject:
    return _process_subject("process", process_data_dir, process_env, fork_server=False)


@pytest.fixture(scope="session")
def forkserver_subject(process_data_dir: Path, process_env: tuple[BuildPlan, Artifact]) -> Subject:
    return _process_subject("process-forkserver", process_data_dir, process_env, fork_server=True)


@pytest.fixture(scope="session")
def docker_subject(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    from spacehub_runner import images
    from spacehub_runner.builders.docker import DockerBuilder
    from spacehub_runner.dockeropts import DockerOptions
    from spacehub_runner.runtimes.docker import DockerRuntime

    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("dockerd is not answering: run deploy/setup/docker.sh (as root) first")
    settings = Settings(data_dir=tmp_path_factory.mktemp("contract-docker"), stop_grace_s=2, ready_timeout_s=60)
    images.bootstrap_base(settings, print)  # a no-op when `make images` made it
    base = DockerOptions.from_settings(settings).base_image_for("3.11")
    dockerfile = f'FROM {base}\nCOPY app.py /opt/app.py\nUSER 1000\nCMD ["python3", "/opt/app.py"]\n'
    src = write_tree(tmp_path_factory.mktemp("docker-src"), {"Dockerfile": dockerfile, "app.py": CONTRACT_APP})
    plan = BuildPlan(recipe="docker")
    artifact = built(DockerBuilder(settings), plan, src)
    yield Subject("docker", lambda: DockerRuntime(settings), artifact, plan, freezable=True, managed=True)
    runtime = DockerRuntime(settings)
    for handle in runtime.list_managed():  # this run's instance label: only what this suite started
        runtime.stop(handle)
    subprocess.run(["docker", "rmi", artifact.ref], capture_output=True)


@pytest.fixture(scope="session")
def kubernetes_subject(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    """KubernetesRuntime against a real cluster: only where SPACEHUB_TEST_KUBECONFIG names one (no API server
    can run on the machines `make test` runs on, so there it is skipped, and reported as skipped).

    It also needs SPACEHUB_TEST_REGISTRY (+ _USERNAME / _PASSWORD), a registry this engine pushes to and the
    cluster pulls from (SPACEHUB_TEST_KUBE_PULL_SECRET names the cluster's Secret for it), and must run where the
    cluster's DNS resolves `<pod>.<namespace>.svc` and its NetworkPolicy admits it: in a pod of the platform
    namespace labelled as a spacehub worker (deploy/kubernetes/)."""
    kubeconfig = os.environ.get("SPACEHUB_TEST_KUBECONFIG")
    if not kubeconfig:
        pytest.skip("SPACEHUB_TEST_KUBECONFIG is not set: no Kubernetes cluster to run the contract against")
    registry = os.environ.get("SPACEHUB_TEST_REGISTRY")
    if not registry:
        pytest.fail("SPACEHUB_TEST_KUBECONFIG is set but SPACEHUB_TEST_REGISTRY is not: the cluster pulls images "
                    "from a registry")
    from pydantic import SecretStr

    from spacehub_runner import images
    from spacehub_runner.builders.docker import DockerBuilder
    from spacehub_runner.dockeropts import DockerOptions

    password = os.environ.get("SPACEHUB_TEST_REGISTRY_PASSWORD")
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("contract-kubernetes"), stop_grace_s=2, ready_timeout_s=180,
        kube_config=Path(kubeconfig), registry=registry,
        registry_username=os.environ.get("SPACEHUB_TEST_REGISTRY_USERNAME"),
        registry_password=SecretStr(password) if password else None,
        kube_namespace=os.environ.get("SPACEHUB_TEST_KUBE_NAMESPACE", "spacehub-spaces"),
        kube_pull_secret=os.environ.get("SPACEHUB_TEST_KUBE_PULL_SECRET"),
    )
    images.bootstrap_base(settings, print)
    base = DockerOptions.from_settings(settings).base_image_for("3.11")
    yield from _on_kubernetes(settings, DockerBuilder(settings), base, tmp_path_factory.mktemp("kubernetes-src"))


@pytest.fixture(scope="session")
def kubernetes_buildkit_subject(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    """KubernetesRuntime running an image the Kubernetes builder made (a rootless BuildKit Job on the same
    cluster, pushed to the registry): only where SPACEHUB_TEST_KUBECONFIG names a cluster, as above. It also
    needs SPACEHUB_TEST_KUBE_BUILD_CONTEXT_HOST, this machine's address as the cluster's build pods reach it
    (they fetch the build context from this process), and a base image the cluster can pull
    (SPACEHUB_TEST_KUBE_BASE_IMAGE, default python:3.11-slim)."""
    kubeconfig = os.environ.get("SPACEHUB_TEST_KUBECONFIG")
    if not kubeconfig:
        pytest.skip("SPACEHUB_TEST_KUBECONFIG is not set: no Kubernetes cluster to build on and run against")
    registry, context_host = os.environ.get("SPACEHUB_TEST_REGISTRY"), os.environ.get(
        "SPACEHUB_TEST_KUBE_BUILD_CONTEXT_HOST")
    if not registry or not context_host:
        pytest.fail("SPACEHUB_TEST_KUBECONFIG is set but SPACEHUB_TEST_REGISTRY or "
                    "SPACEHUB_TEST_KUBE_BUILD_CONTEXT_HOST is not: builds push to a registry and fetch their "
                    "context from this machine")
    from pydantic import SecretStr

    from spacehub_runner.builders.kubernetes import KubernetesBuilder

    password = os.environ.get("SPACEHUB_TEST_REGISTRY_PASSWORD")
    base = os.environ.get("SPACEHUB_TEST_KUBE_BASE_IMAGE", "python:3.11-slim")
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("contract-kubernetes-buildkit"), stop_grace_s=2, ready_timeout_s=180,
        kube_config=Path(kubeconfig), registry=registry, builder="kubernetes", runtime="kubernetes",
        registry_username=os.environ.get("SPACEHUB_TEST_REGISTRY_USERNAME"),
        registry_password=SecretStr(password) if password else None,
        kube_namespace=os.environ.get("SPACEHUB_TEST_KUBE_NAMESPACE", "spacehub-spaces"),
        kube_build_namespace=os.environ.get("SPACEHUB_TEST_KUBE_BUILD_NAMESPACE", "spacehub-builds"),
        kube_pull_secret=os.environ.get("SPACEHUB_TEST_KUBE_PULL_SECRET"), kube_build_context_host=context_host,
    )
    yield from _on_kubernetes(settings, KubernetesBuilder(settings), base,
                              tmp_path_factory.mktemp("kubernetes-buildkit-src"))


def _on_kubernetes(settings: Settings, builder: Builder, base: str, folder: Path) -> Iterator[Subject]:
    """The contract app built by `builder` on `base` and run by KubernetesRuntime; afterwards every pod this run's
    instance label owns is stopped (only what this suite started)."""
    from spacehub_runner.kube.runtime import KubernetesRuntime

    dockerfile = f'FROM {base}\nCOPY app.py /opt/app.py\nUSER 1000\nCMD ["python3", "/opt/app.py"]\n'
    src = write_tree(folder, {"Dockerfile": dockerfile, "app.py": CONTRACT_APP})
    plan = BuildPlan(recipe="docker")
    artifact = built(builder, plan, src)
    yield Subject("kubernetes", lambda: KubernetesRuntime(settings), artifact, plan, freezable=False, managed=True,
                  ready_timeout_s=180)
    runtime = KubernetesRuntime(settings)
    for handle in runtime.list_managed():
        runtime.stop(handle)


SUBJECTS = [
    pytest.param("fake_subject", id="fake"),
    pytest.param("process_subject", id="process"),
    pytest.param("forkserver_subject", id="process-forkserver"),
    pytest.param("docker_subject", id="docker", marks=pytest.mark.docker),
    pytest.param("kubernetes_subject", id="kubernetes"),
    pytest.param("kubernetes_buildkit_subject", id="kubernetes-buildkit"),
]


@pytest.fixture(params=SUBJECTS)
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    chosen: Subject = request.getfixturevalue(request.param)
    yield chosen
    runtime = chosen.make_runtime()
    for handle in chosen.handles:
        runtime.stop(handle)
    chosen.handles.clear()
