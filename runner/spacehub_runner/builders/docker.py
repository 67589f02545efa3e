"""The docker builder: a BuildPlan plus a source tree -> a content-named image (`spacehub/app:<key>`).

gradio recipe: the Dockerfile is generated from the plan alone (never from file content), in layers that
change from rarely to often, so a code-only change rebuilds only the last one:

    FROM spacehub/sdk:py3.11-gradio6.31.0     base + /opt/venv with gradio (see `spacehub_runner.images`)
    RUN apt-get install <packages.txt>        names re-checked against a strict pattern
    COPY + RUN uv pip install pre-requirements / requirements   (uv cache mount; bytecode compiled)
    WORKDIR, USER 1000, CMD python <app_file>
    COPY --chown=1000:1000 app/ /home/user/app/

docker recipe: the space's own Dockerfile, with its variables as `--build-arg` and its secrets as BuildKit
secrets (`RUN --mount=type=secret,id=NAME`), which never enter a layer, the image config or the log. The
platform adds one build arg of its own, `SPACEHUB_BASE_IMAGE` (the configured base for the space's Python), so
a Dockerfile can say `ARG SPACEHUB_BASE_IMAGE=python:3.11-slim` + `FROM $SPACEHUB_BASE_IMAGE` and build both on
the Hub and on a host without an image registry.

Every build step reaches the platform's public port as `host.docker.internal` (as running spaces do), and
nothing else of it.

static recipe: no image; the platform serves the files itself (same artifact as the process builder's).

The image tag is a hash of the plan, the tree, the image it starts from and the build arguments, so an
unchanged space is never rebuilt: `docker image inspect` finds the tag and the build returns at once.

With SPACEHUB_REGISTRY set, every image is pushed there and the artifact names it by digest
(`spacehub_runner.imageregistry`); a tag the registry already holds is not built again on another worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import docker

from spacehub.dockerhost import HOST_ALIAS
from spacehub.errors import BuildFailed
from spacehub.settings import Settings

from .. import imageregistry, images
from ..dockerbuild import SECRET_ID, BuildRequest, DiskCap, docker_root, image_id, run_build
from ..dockeropts import DockerOptions
from ..plugs import NO_INPUTS, Artifact, BuildInputs, BuildPlan, LogFn
from .process import ProcessBuilder, content_hash, tree_hash

# Bump when the generated Dockerfile changes meaning, so old images are not mistaken for new ones.
DOCKERFILE_VERSION = 1
APP_DIR = "/home/user/app"
APT_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
APP_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\.py$")
BUILD_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BASE_IMAGE_ARG = "SPACEHUB_BASE_IMAGE"


class DockerBuilder:
    """Builds `docker-image` artifacts (gradio and docker recipes) and `static` artifacts."""

    name = "docker"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.opts = DockerOptions.from_settings(settings)
        self._client: docker.DockerClient | None = None

    def build(self, plan: BuildPlan, src: Path, log: LogFn, inputs: BuildInputs = NO_INPUTS) -> Artifact:
        """Build (or find) the image for `plan` + `src`.

        `inputs.variables` (as build args) and `inputs.secrets` (as BuildKit secrets) matter to the docker recipe
        only; the gradio recipe gets variables and secrets at run time, never in an image.
        `inputs.no_cache` (a factory rebuild) builds every layer again: needed after a build secret changed, since
        neither the tag nor BuildKit's layer cache depends on secret values.
        """
        if plan.recipe == "static":
            return ProcessBuilder(self.settings).build(plan, src, log)
        if plan.recipe not in ("gradio", "docker"):
            raise BuildFailed(f"the docker builder cannot build recipe {plan.recipe!r}")
        deadline = time.monotonic() + self.settings.build_timeout_s
        args = dict(inputs.variables) if plan.recipe == "docker" else {}
        secrets = dict(inputs.secrets) if plan.recipe == "docker" else {}
        no_cache = inputs.no_cache
        if plan.recipe == "docker":
            args[BASE_IMAGE_ARG] = self.opts.base_image_for(plan.python_version)
        for name in [*args, *secrets]:
            if not BUILD_ARG.match(name) or not SECRET_ID.match(name):
                raise BuildFailed(f"invalid build argument or secret name {name!r}")

        tree = tree_hash(src)
        from_id = sdk_ref = gradio = ""
        if plan.recipe == "gradio":
            gradio = plan.sdk_version or self.settings.default_gradio_version
            sdk_ref = images.ensure_sdk_image(self.settings, plan.python_version, gradio, log)
            from_id = image_id(self.opts.cli, sdk_ref) or ""
        key = content_hash(
            {
                "v": DOCKERFILE_VERSION,
                "plan": plan.to_json(),
                "tree": tree,
                "from": from_id,
                "args": args,
                # Names only: a hash of secret values in a public tag could be brute-forced.
                "secrets": sorted(secrets),
            }
        )
        tag = f"{self.opts.app_repo}:{key}"
        artifact = Artifact(
            kind="docker-image",
            key=key,
            ref=tag,
            # The jobs start an artifact with the runtime it names: a pushed image may be the cluster's to run.
            extra={"runtime": "kubernetes" if self.settings.runtime == "kubernetes" else "docker",
                   "app_port": plan.app_port, "tree_hash": tree},
        )
        if not no_cache and image_id(self.opts.cli, tag):
            log(f"image {tag} already built for this tree and plan; nothing to build")
            return self._published(artifact, log)
        if not no_cache and imageregistry.enabled(self.settings):
            pushed = imageregistry.find_pushed(self.client, self.settings, self.opts.app_repo, key)
            if pushed:
                log(f"image {pushed} already in the registry for this tree and plan; nothing to build")
                return replace(artifact, ref=pushed, extra={**artifact.extra, "tag": tag})

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BuildFailed("build timed out before the image build started")
        log(f"building image {tag}")
        request = BuildRequest(
            context=src,
            dockerfile=src / "Dockerfile",
            tag=tag,
            build_args=args,
            secrets=secrets,
            labels={"spacehub.key": key, "spacehub.recipe": plan.recipe},
            timeout_s=remaining,
            no_cache=no_cache,
            add_hosts={HOST_ALIAS: "host-gateway"},
            disk=DiskCap(docker_root(self.opts.cli), int(self.opts.build_disk_gb * 1024**3),
                         self.opts.build_disk_check_s),
        )
        if plan.recipe == "docker":
            self._build_docker_recipe(request, log)
        else:
            self._build_gradio_recipe(request, plan, sdk_ref, gradio, log)
        return self._published(artifact, log)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.from_env(version="auto")
        return self._client

    def _published(self, artifact: Artifact, log: LogFn) -> Artifact:
        """With a registry (SPACEHUB_REGISTRY): the image pushed there, named by digest (what runtimes run)."""
        if not imageregistry.enabled(self.settings):
            return artifact
        ref = imageregistry.push(self.client, self.settings, artifact.ref, self.opts.app_repo, artifact.key, log)
        return replace(artifact, ref=ref, extra={**artifact.extra, "tag": artifact.ref})

    def _build_docker_recipe(self, request: BuildRequest, log: LogFn) -> None:
        """The space's own Dockerfile, its own tree as the context (its .dockerignore applies)."""
        if not request.dockerfile.is_file() or request.dockerfile.is_symlink():
            raise BuildFailed("no Dockerfile at the root of the repository (sdk: docker)")
        run_build(self.opts.cli, request, log)

    def _build_gradio_recipe(
        self, request: BuildRequest, plan: BuildPlan, sdk_ref: str, gradio: str, log: LogFn
    ) -> None:
        """A generated Dockerfile in a context of our own: the app under app/, generated files under spacehub/."""
        with (
            gradio_context(self.settings, request.context, plan, sdk_ref, gradio) as ctx,
            images.build_sources(self.settings, self.opts) as secret_files,
        ):
            local = replace(request, context=ctx, dockerfile=ctx / "Dockerfile", secret_files=secret_files)
            run_build(self.opts.cli, local, log)

    def artifact_exists(self, artifact: Artifact) -> bool:
        """Whether the artifact can still be started (its image was not pruned)."""
        if artifact.kind == "static":
            return Path(artifact.ref).is_dir()
        if imageregistry.is_digest_ref(artifact.ref):
            return imageregistry.exists(self.client, self.settings, artifact.ref)
        return image_id(self.opts.cli, artifact.ref) is not None


@contextmanager
def gradio_context(settings: Settings, src: Path, plan: BuildPlan, sdk_ref: str, gradio: str) -> Iterator[Path]:
    """A gradio space's build context (every builder's): the app under app/, generated files under spacehub/,
    the generated Dockerfile. Removed on exit."""
    # In the data dir, named by the build (its checkout's folder): a context left by a killed build is found and
    # removed by the reconciler (`orphans`), never confused with another platform's on the same machine.
    scratch = settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"build-{src.name}-", dir=scratch) as tmp:
        ctx = Path(tmp)
        shutil.copytree(src, ctx / "app", symlinks=True, ignore=shutil.ignore_patterns(".git"),
                        copy_function=_link_or_copy)
        generated = ctx / "spacehub"
        generated.mkdir()
        # Requirements travel as files in the context, so their text never enters the Dockerfile.
        (generated / "pre-requirements.txt").write_text("".join(f"{r}\n" for r in plan.pre_requirements))
        (generated / "requirements.txt").write_text("".join(f"{r}\n" for r in plan.requirements))
        # The SDK's gradio wins over any gradio pin in requirements.txt (as on the Hub).
        (generated / "overrides.txt").write_text(f"gradio=={gradio}\n")
        (ctx / "Dockerfile").write_text(gradio_dockerfile(plan, sdk_ref))
        yield ctx


def gradio_dockerfile(plan: BuildPlan, sdk_ref: str) -> str:
    """The Dockerfile of a gradio space, from its plan only. Every value pasted in is checked first."""
    for package in plan.apt_packages:
        if not APT_PACKAGE.match(package):
            raise BuildFailed(f"packages.txt: {package[:60]!r} is not a Debian package name")
    if not APP_FILE.match(plan.app_file) or ".." in plan.app_file.split("/"):
        raise BuildFailed(f"app_file {plan.app_file[:60]!r} is not a relative path to a .py file")
    if not 1 <= int(plan.app_port) <= 65535:
        raise BuildFailed(f"app_port {plan.app_port} is not a port")
    venv_python = f"{images.VENV}/bin/python"
    lines = [f"FROM {sdk_ref}", "USER root"]
    if plan.apt_packages:
        lines.append(
            "RUN --mount=type=cache,id=spacehub-apt-cache,target=/var/cache/apt,sharing=locked "
            "--mount=type=cache,id=spacehub-apt-lists,target=/var/lib/apt/lists,sharing=locked "
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            + " ".join(plan.apt_packages)
        )
    steps = (("pre-requirements.txt", plan.pre_requirements), ("requirements.txt", plan.requirements))
    for name, reqs in steps:
        if not reqs:
            continue
        lines.append(f"COPY spacehub/{name} spacehub/overrides.txt /tmp/spacehub/")
        lines.append(
            images.uv_run(
                f"uv pip install --python {venv_python} --compile-bytecode "
                f"-r /tmp/spacehub/{name} --override /tmp/spacehub/overrides.txt"
            )
        )
    lines += [
        f"WORKDIR {APP_DIR}",
        "ENV HOME=/home/user",
        "USER 1000",
        f"EXPOSE {int(plan.app_port)}",
        f"CMD {json.dumps(['python', plan.app_file])}",
        # Last, so that a code-only change rebuilds this layer alone.
        f"COPY --chown=1000:1000 app/ {APP_DIR}/",
    ]
    return "\n".join(lines) + "\n"


def _link_or_copy(src: str, dst: str) -> object:
    """Hard-link when tree and build context share a filesystem (a big tree then costs nothing), else copy."""
    try:
        os.link(src, dst)
        return dst
    except OSError:
        return shutil.copy2(src, dst)
