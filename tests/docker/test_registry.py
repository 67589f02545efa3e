"""The image registry in the loop, for real: build, push to a real registry (Debian's docker-registry on loopback,
with credentials), remove the local image, pull it back by digest and run it on Docker."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker as docker_py
import pytest
from dockerkit import Log, docker, run_spec, write_tree
from pydantic import SecretStr

from spacehub.errors import StartFailed
from spacehub.settings import Settings
from spacehub_runner import backends, gc, imageregistry
from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.plugs import Artifact, BuildPlan
from spacehub_runner.runtimes.docker import DockerRuntime
from support.registry import Registry, running_registry

pytestmark = pytest.mark.docker

SPACE_ID = 990_090


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry")) as found:
        yield found


@pytest.fixture(scope="module")
def pushing(settings: Settings, registry: Registry) -> Settings:
    # A path of its own under the registry, so that nothing pushed earlier can answer for this run.
    return settings.model_copy(update={
        "registry": f"{registry.address}/run-{secrets.token_hex(4)}",
        "registry_username": registry.username,
        "registry_password": SecretStr(registry.password),
    })


@pytest.fixture(scope="module")
def pushed(pushing: Settings, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Artifact]:
    tree = write_tree(tmp_path_factory.mktemp("registry-space"), {
        "Dockerfile": f'FROM {base_image}\nWORKDIR /tmp\nCMD ["python3", "-m", "http.server", "7860"]\n',
        "unique.txt": secrets.token_hex(8),  # a tree of its own: a real build and a real push
    })
    log = Log()
    artifact = DockerBuilder(pushing).build(BuildPlan(recipe="docker"), tree, log)
    assert any(line.startswith("pushed ") for line in log.lines), log.text
    yield artifact
    docker("rmi", artifact.ref, check=False)
    docker("rmi", str(artifact.extra.get("tag", "")), check=False)


def test_the_build_is_pushed_and_named_by_digest(pushing: Settings, registry: Registry, pushed: Artifact) -> None:
    repo = imageregistry.remote_repo(pushing, "spacehub/app")
    name, _, digest = pushed.ref.partition("@")
    assert name == repo and digest.startswith("sha256:") and len(digest) == 71
    # The registry itself (its HTTP API, with the credentials) holds that manifest under the content tag.
    path = repo.split("/", 1)[1]
    with registry.client() as http:
        assert http.get(f"/v2/{path}/tags/list").json()["tags"] == [pushed.key]
        answer = http.head(f"/v2/{path}/manifests/{pushed.key}",
                           headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert answer.status_code == 200 and answer.headers["Docker-Content-Digest"] == digest
    # Anonymous clients get nothing: the credentials settings are what opened it.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{registry.address}/v2/", timeout=10)
    assert refused.value.code == 401


def test_pulled_by_digest_and_run_on_docker(pushing: Settings, pushed: Artifact, base_image: str,
                                            tmp_path: Path) -> None:
    # Gone from this engine: both the content tag and the digest name.
    docker("rmi", str(pushed.extra["tag"]), check=False)
    docker("rmi", pushed.ref, check=False)
    assert docker("image", "inspect", pushed.ref, check=False).returncode != 0
    # Still startable (the registry has it), so the job would not rebuild it.
    assert backends.artifact_exists(pushing, pushed)
    assert DockerBuilder(pushing).artifact_exists(pushed)

    runtime = DockerRuntime(pushing)
    handle = runtime.start(run_spec(SPACE_ID, BuildPlan(recipe="docker")), pushed)
    try:
        runtime.wait_ready(handle, timeout=60)
        with urllib.request.urlopen(f"http://{handle.target}/", timeout=10) as response:
            assert response.status == 200
        config = docker("inspect", "--format", "{{.Config.Image}}", handle.data["container_id"]).stdout.strip()
        assert config == pushed.ref  # the container runs the image by digest
    finally:
        runtime.stop(handle)
    assert docker("image", "inspect", pushed.ref, check=False).returncode == 0  # pulled back


def test_gc_knows_an_image_pulled_by_digest_as_the_platforms(pushing: Settings, pushed: Artifact) -> None:
    # As on an engine that never built it: only the pulled image, which has no tag, just its digest name.
    docker("rmi", str(pushed.extra["tag"]), check=False)
    docker("rmi", pushed.ref, check=False)
    client = docker_py.from_env(version="auto")
    imageregistry.ensure_local(client, pushing, pushed.ref)
    remote = imageregistry.remote_repo(pushing, "spacehub/app")
    (image,) = [found for found in client.images.list(name=remote)
                if pushed.ref in (found.attrs.get("RepoDigests") or [])]
    assert not [tag for tag in image.tags if tag.startswith("spacehub/app:")]
    # Before, gc looked at tags only, and such an image was never collected.
    assert gc.image_names(image.tags, image.attrs["RepoDigests"], ["spacehub/app", remote]) == [pushed.ref]


def test_a_second_worker_finds_the_pushed_build(pushing: Settings, pushed: Artifact, tmp_path: Path,
                                                base_image: str) -> None:
    # A worker whose engine lacks the content tag asks the registry before it builds.
    tree = tmp_path / "again"
    tree.mkdir()
    log = Log()
    write_tree(tree, {
        "Dockerfile": f'FROM {base_image}\nWORKDIR /tmp\nCMD ["python3", "-m", "http.server", "7860"]\n',
        # A tree of its own too: the same files as another test's image would be that image's tag, removed below.
        "unique.txt": secrets.token_hex(8),
    })
    # A different tree gets a different key: not found, so it is built and pushed (a tag of its own).
    other = DockerBuilder(pushing).build(BuildPlan(recipe="docker"), tree, log)
    try:
        assert other.key != pushed.key and any(line.startswith("pushed ") for line in log.lines)
        # Asked again for it without the local tag: found in the registry, same digest, no build.
        docker("rmi", str(other.extra["tag"]), check=False)
        again = Log()
        found = DockerBuilder(pushing).build(BuildPlan(recipe="docker"), tree, again)
        assert found.ref == other.ref
        assert any("already in the registry" in line for line in again.lines), again.text
        assert not any(line.startswith("building image") for line in again.lines), again.text
    finally:
        docker("rmi", other.ref, check=False)
        docker("rmi", str(other.extra.get("tag", "")), check=False)


def test_a_pull_without_credentials_is_refused_with_the_reason(pushing: Settings, pushed: Artifact) -> None:
    anonymous = pushing.model_copy(update={"registry_username": None, "registry_password": None})
    docker("rmi", pushed.ref, check=False)
    with pytest.raises(StartFailed, match="could not pull .*(auth|credentials|unauthorized)"):
        DockerRuntime(anonymous).start(run_spec(SPACE_ID + 1, BuildPlan(recipe="docker")), pushed)


def test_the_registry_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="SPACEHUB_REGISTRY"):
        Settings(registry="https://registry.example.com")
    assert Settings(registry="registry.example.com:5000/team").registry == "registry.example.com:5000/team"


def test_gc_counts_the_local_tag_of_a_pushed_artifact_as_in_use(pushed: Artifact) -> None:
    use = gc.Needed()
    gc._add_artifact(use, pushed.to_json())  # what gc.needed does for every wanted build's artifact
    assert {pushed.ref, str(pushed.extra["tag"])} <= use.images
