"""The Kubernetes builder's flow against a fake cluster (its BuildCluster plug point) and a fake registry lookup:
the Job and its inputs Secret are created (and valid for the supported versions), the build context is fetched for
real from the worker's one-time URL and matches its digest, the pod's log reaches the build log in order with secret
values masked, the pushed digest is read back from the termination message, failure, timeout and an unpullable
image become BuildFailed, an image already in the registry is not built again, and the Job and Secret are deleted
whatever happened. (No cluster here: what a real one does is in tests/contract, run where
SPACEHUB_TEST_KUBECONFIG names one.)"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubekit import K8S_VERSIONS

from spacehub.errors import BuildFailed
from spacehub.settings import Settings
from spacehub_runner import backends, registryhttp
from spacehub_runner.builders.kubernetes import KubernetesBuilder, lines_of
from spacehub_runner.plugs import BuildInputs, BuildPlan

DIGEST = "sha256:" + "ab" * 32
SDK_DIGEST = "sha256:" + "cd" * 32
SECRET_VALUE = "hf_build-secret-value-42"
REGISTRY = "registry.example.com/spacehub"


class FakeCluster:
    """Plays the cluster: keeps what is created, plays the init container (fetches and checks the context over
    the real HTTP URL), then reports the pod's states and log as `outcome` says."""

    def __init__(self, outcome: str = "ok", log: tuple[str, ...] = ()) -> None:
        self.outcome = outcome
        self.log_lines = log or ("#1 [internal] load build definition from Dockerfile",
                                 f"#2 RUN echo {SECRET_VALUE}", "#3 exporting to image", "#3 pushing layers done")
        self.secrets: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.deleted: list[tuple[str, str]] = []
        self.contexts: dict[str, dict[str, bytes]] = {}
        self.polls = 0

    def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        assert namespace == body["metadata"]["namespace"]
        self.secrets[body["metadata"]["name"]] = body

    def delete_secret(self, namespace: str, name: str) -> None:
        self.deleted.append(("Secret", name))

    def create_job(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        self.jobs[name] = body
        # The init container: fetch the URL from the inputs Secret, check the digest from the Job spec.
        inputs = self.secrets[f"{name}-inputs"]
        url = base64.b64decode(inputs["data"]["context-url"]).decode()
        with urllib.request.urlopen(url, timeout=10) as answer:
            data = answer.read()
        fetch = body["spec"]["template"]["spec"]["initContainers"][0]
        expected = next(e["value"] for e in fetch["env"] if e["name"] == "CONTEXT_SHA256")
        assert hashlib.sha256(data).hexdigest() == expected
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            self.contexts[name] = {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                                   for m in tar.getmembers() if m.isfile()}

    def delete_job(self, namespace: str, name: str) -> None:
        self.deleted.append(("Job", name))

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.outcome == "timeout":
            return {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                               "message": "Job was active longer than specified deadline"}]}}
        return {"status": {}}

    def job_pod(self, namespace: str, job_name: str) -> dict[str, Any] | None:
        self.polls += 1
        if self.outcome == "timeout":
            return None  # the Job controller deleted it
        init = [{"name": "fetch-context", "state": {"terminated": {"exitCode": 0}}}]
        if self.outcome == "pull-error":
            init = [{"name": "fetch-context", "state": {"waiting": {
                "reason": "ErrImagePull", "message": "pull access denied for moby/buildkit"}}}]
            return {"metadata": {"name": f"{job_name}-x"}, "status": {"initContainerStatuses": init}}
        if self.polls == 1:  # first look: still starting
            return {"metadata": {"name": f"{job_name}-x"}, "status": {"initContainerStatuses": [
                {"name": "fetch-context", "state": {"running": {}}}]}}
        if self.polls == 2:
            state: dict[str, Any] = {"running": {}}
        elif self.outcome == "ok":
            message = SDK_DIGEST if "sdk" in self.jobs[job_name]["spec"]["template"]["spec"]["containers"][0][
                "args"][-2] else DIGEST
            state = {"terminated": {"exitCode": 0, "reason": "Completed", "message": message + "\n"}}
        else:
            state = {"terminated": {"exitCode": 1, "reason": "Error"}}
        return {"metadata": {"name": f"{job_name}-x"},
                "status": {"initContainerStatuses": init, "containerStatuses": [{"name": "buildkit",
                                                                                 "state": state}]}}

    def follow_log(self, namespace: str, pod: str, container: str) -> Iterator[str]:
        assert container == "buildkit"
        yield from self.log_lines


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The registry, as the builder asks it (tag -> digest)."""
    held: dict[str, str] = {}
    monkeypatch.setattr(registryhttp, "manifest_digest", lambda settings, ref, timeout_s=10.0: held.get(ref))
    return held


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", registry=REGISTRY, registry_username="robot",
                    kube_build_context_host="127.0.0.1", kube_build_poll_s=0.01, builder="kubernetes",
                    runtime="kubernetes")


def docker_space(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY app.py /app.py\nCMD [\"python\", \"/app.py\"]\n")
    (src / "app.py").write_text("print('hi')\n")
    return src


def test_a_docker_space_is_built_by_a_job_and_named_by_its_pushed_digest(
        settings: Settings, tmp_path: Path, pushed: dict[str, str]) -> None:
    cluster = FakeCluster()
    lines: list[str] = []
    artifact = KubernetesBuilder(settings, cluster).build(
        BuildPlan(recipe="docker"), docker_space(tmp_path), lines.append,
        BuildInputs(variables={"GREETING": "hello"}, secrets={"HF_TOKEN": SECRET_VALUE}))
    assert artifact.kind == "docker-image" and artifact.ref == f"{REGISTRY}/spacehub/app@{DIGEST}"
    assert artifact.extra["runtime"] == "kubernetes"
    (name,) = cluster.jobs
    job = cluster.jobs[name]
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
        kubernetes_validate.validate(cluster.secrets[f"{name}-inputs"], version, strict=True)
    # The context that reached the pod is the space's tree, unchanged.
    assert cluster.contexts[name]["Dockerfile"].startswith(b"FROM python:3.11-slim")
    assert cluster.contexts[name]["app.py"] == b"print('hi')\n"
    # Build log: the pod's lines in order, the secret masked; then the pushed name.
    body = [line for line in lines if line.startswith("#")]
    assert body == ["#1 [internal] load build definition from Dockerfile", "#2 RUN echo *****",
                    "#3 exporting to image", "#3 pushing layers done"]
    assert lines[-1] == f"pushed {REGISTRY}/spacehub/app@{DIGEST}"
    assert SECRET_VALUE not in "\n".join(lines) and SECRET_VALUE not in yaml.safe_dump(job)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--opt=build-arg:GREETING=hello" in args and "--secret=id=HF_TOKEN,src=" \
        "/run/spacehub/secrets/secret.HF_TOKEN" in args
    assert job["spec"]["activeDeadlineSeconds"] <= settings.build_timeout_s
    assert sorted(cluster.deleted) == [("Job", name), ("Secret", f"{name}-inputs")]


def test_an_image_already_in_the_registry_is_not_built_again(
        settings: Settings, tmp_path: Path, pushed: dict[str, str]) -> None:
    src = docker_space(tmp_path)
    first = KubernetesBuilder(settings, FakeCluster()).build(BuildPlan(recipe="docker"), src, lambda _: None)
    pushed[first.extra["tag"]] = DIGEST  # what the push left in the registry
    cluster = FakeCluster()
    lines: list[str] = []
    again = KubernetesBuilder(settings, cluster).build(BuildPlan(recipe="docker"), src, lines.append)
    assert again.ref == first.ref and again.key == first.key and not cluster.jobs
    assert "already in the registry" in lines[-1]
    # A factory rebuild builds all the same.
    rebuilt = FakeCluster()
    KubernetesBuilder(settings, rebuilt).build(BuildPlan(recipe="docker"), src, lambda _: None,
                                               BuildInputs(no_cache=True))
    (job,) = rebuilt.jobs.values()
    assert "--no-cache" in job["spec"]["template"]["spec"]["containers"][0]["args"]


def test_a_gradio_space_gets_the_sdk_image_first_and_the_docker_builders_context(
        settings: Settings, tmp_path: Path, pushed: dict[str, str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("import gradio\n")
    cluster = FakeCluster()
    plan = BuildPlan(recipe="gradio", sdk_version="6.31.0", requirements=("numpy",))
    artifact = KubernetesBuilder(settings, cluster).build(plan, src, lambda _: None)
    sdk_job, app_job = cluster.jobs  # in the order they were made
    sdk_args = cluster.jobs[sdk_job]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert any(a.startswith(f"--output=type=image,name={REGISTRY}/spacehub/sdk:py3.11-gradio6.31.0-") for a in sdk_args)
    assert b"gradio==6.31.0" in cluster.contexts[sdk_job]["Dockerfile"]
    app = cluster.contexts[app_job]
    # The app's image stands on the SDK image just pushed, by digest; the layers are the docker builder's.
    assert app["Dockerfile"].startswith(f"FROM {REGISTRY}/spacehub/sdk@{SDK_DIGEST}\n".encode())
    assert app["app/app.py"] == b"import gradio\n" and app["spacehub/requirements.txt"] == b"numpy\n"
    assert artifact.ref == f"{REGISTRY}/spacehub/app@{DIGEST}"
    assert len(cluster.deleted) == 4


@pytest.mark.parametrize(("outcome", "reason"), [
    ("fail", r"image build failed \(buildkit exit 1\)"),
    ("timeout", "build timed out"),
    ("pull-error", "ErrImagePull: pull access denied"),
])
def test_failures_become_build_errors_and_the_job_is_deleted(
        settings: Settings, tmp_path: Path, pushed: dict[str, str], outcome: str, reason: str) -> None:
    cluster = FakeCluster(outcome)
    with pytest.raises(BuildFailed, match=reason):
        KubernetesBuilder(settings, cluster).build(BuildPlan(recipe="docker"), docker_space(tmp_path),
                                                   lambda _: None)
    (name,) = cluster.jobs
    assert sorted(cluster.deleted) == [("Job", name), ("Secret", f"{name}-inputs")]


def test_a_cancelled_build_deletes_its_job(settings: Settings, tmp_path: Path, pushed: dict[str, str]) -> None:
    class Superseded(Exception):
        pass

    def log(line: str) -> None:
        if line.startswith("#2"):
            raise Superseded  # a newer push: the job's log callback raises, as the jobs' cancellable log does

    cluster = FakeCluster()
    with pytest.raises(Superseded):
        KubernetesBuilder(settings, cluster).build(BuildPlan(recipe="docker"), docker_space(tmp_path), log)
    (name,) = cluster.jobs
    assert ("Job", name) in cluster.deleted


def test_what_the_builder_needs_is_said_plainly(settings: Settings, tmp_path: Path) -> None:
    src = docker_space(tmp_path)
    with pytest.raises(BuildFailed, match="SPACEHUB_REGISTRY"):
        KubernetesBuilder(settings.model_copy(update={"registry": None}), FakeCluster()).build(
            BuildPlan(recipe="docker"), src, lambda _: None)
    with pytest.raises(BuildFailed, match="SPACEHUB_KUBE_BUILD_CONTEXT_HOST"):
        KubernetesBuilder(settings.model_copy(update={"kube_build_context_host": None}), FakeCluster()).build(
            BuildPlan(recipe="docker"), src, lambda _: None)


def test_it_is_picked_by_spacehub_builder(settings: Settings) -> None:
    assert backends.builder_for(settings, "kubernetes").name == "kubernetes"
    auto = settings.model_copy(update={"builder": "auto"})
    assert backends.builder_for(auto, "kubernetes").name == "docker"
    assert backends.builder_for(auto, "process").name == "process"


def test_log_lines_are_whole_however_the_stream_is_cut() -> None:
    chunks = [b"#1 lo", b"ad\n#2 ru", b"n\r\n", b"\n#3 \xc3", b"\xa9t\xc3\xa9", b""]
    assert list(lines_of(iter(chunks))) == ["#1 load", "#2 run", "", "#3 \u00e9t\u00e9"]
