"""The Kubernetes builder (SPACEHUB_BUILDER=kubernetes): every image build is a Job of rootless BuildKit on the
cluster, pushing to SPACEHUB_REGISTRY; the artifact is named by the digest BuildKit pushed. No Docker engine.

The same layer plan as the docker builder: the same generated Dockerfile and build context for gradio spaces
(`docker.gradio_context`), the space's own Dockerfile and tree for docker spaces, the same content key (so an
unchanged space is never rebuilt: the registry is asked for `<repo>:<key>` first), the same SDK image
(`images.sdk_dockerfile`, built by a Job of its own the first time and kept in the registry), build secrets as
BuildKit secret mounts. Layers outlive the build pod through a registry cache (`<repo>:cache-<plan key>`): a
code-only change rebuilds only the last layer. The pod's own BuildKit cache mounts (uv, apt) die with it.

How the Job is made is pure (`kube.buildobjects`); how the context reaches it is `kube.buildcontext`; this module
is the flow: create the inputs Secret and the Job, stream the pod's log into the build log as it is written, read
the pushed digest from the BuildKit container's termination message, map failure and timeout
(activeDeadlineSeconds) to BuildFailed, and delete the Job and Secret whatever happened (ttlSecondsAfterFinished
catches what a crashed worker left).

The cluster is reached through `BuildCluster`, a small plug point (the official client in `ClientCluster`), so the
flow is unit-tested against a fake and the Job against the official schemas.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from spacehub.errors import BuildFailed
from spacehub.settings import Settings

from .. import imageregistry, images, pkgsources, registryhttp
from ..dockerbuild import SECRET_ID, _masker
from ..dockeropts import DockerOptions
from ..kube import buildcontext, buildobjects
from ..plugs import NO_INPUTS, Artifact, BuildInputs, BuildPlan, LogFn
from .docker import BASE_IMAGE_ARG, BUILD_ARG, DOCKERFILE_VERSION, gradio_context
from .process import ProcessBuilder, content_hash, tree_hash

SDK_VERSION = 1  # bump when the SDK Dockerfile changes meaning
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Why a pod cannot start its build, as the kubelet says it: the build fails at once, naming it.
_STUCK = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
          "CreateContainerError"}
_MASK = "*****"


class BuildCluster(Protocol):
    """What the builder asks of the cluster (bodies and answers are plain dicts)."""

    def create_secret(self, namespace: str, body: dict[str, Any]) -> None: ...
    def delete_secret(self, namespace: str, name: str) -> None: ...  # idempotent
    def create_job(self, namespace: str, body: dict[str, Any]) -> None: ...
    def delete_job(self, namespace: str, name: str) -> None: ...  # idempotent; its pods go with it
    def job(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def job_pod(self, namespace: str, job_name: str) -> dict[str, Any] | None: ...
    def follow_log(self, namespace: str, pod: str, container: str) -> Iterator[str]: ...  # until it ends


class KubernetesBuilder:
    """Builds `docker-image` artifacts (gradio and docker recipes) as BuildKit Jobs; `static` as the process one."""

    name = "kubernetes"

    def __init__(self, settings: Settings, cluster: BuildCluster | None = None) -> None:
        self.settings = settings
        self.opts = DockerOptions.from_settings(settings)
        self.namespace = settings.kube_build_namespace
        self._cluster = cluster

    @property
    def cluster(self) -> BuildCluster:
        if self._cluster is None:
            self._cluster = ClientCluster(self.settings)
        return self._cluster

    # -- the Builder protocol -------------------------------------------------------------------------------

    def build(self, plan: BuildPlan, src: Path, log: LogFn, inputs: BuildInputs = NO_INPUTS) -> Artifact:
        if plan.recipe == "static":
            return ProcessBuilder(self.settings).build(plan, src, log)
        if plan.recipe not in ("gradio", "docker"):
            raise BuildFailed(f"the kubernetes builder cannot build recipe {plan.recipe!r}")
        if not imageregistry.enabled(self.settings):
            raise BuildFailed("the kubernetes builder pushes to an image registry: set SPACEHUB_REGISTRY")
        if not self.settings.kube_build_context_host:
            raise BuildFailed("the kubernetes builder needs SPACEHUB_KUBE_BUILD_CONTEXT_HOST (the worker's pod IP)")
        deadline = time.monotonic() + self.settings.build_timeout_s
        args = dict(inputs.variables) if plan.recipe == "docker" else {}
        build_secrets = dict(inputs.secrets) if plan.recipe == "docker" else {}
        if plan.recipe == "docker":
            args[BASE_IMAGE_ARG] = self.opts.base_image_for(plan.python_version)
            if not (src / "Dockerfile").is_file() or (src / "Dockerfile").is_symlink():
                raise BuildFailed("no Dockerfile at the root of the repository (sdk: docker)")
        for name in [*args, *build_secrets]:
            if not BUILD_ARG.match(name) or not SECRET_ID.match(name):
                raise BuildFailed(f"invalid build argument or secret name {name!r}")

        tree = tree_hash(src)
        sdk_ref = gradio = ""
        if plan.recipe == "gradio":
            gradio = plan.sdk_version or self.settings.default_gradio_version
            sdk_ref = self._sdk_image(plan.python_version, gradio, log, deadline)
        plan_key = content_hash({"v": DOCKERFILE_VERSION, "plan": plan.to_json(), "from": sdk_ref, "args": args,
                                 "secrets": sorted(build_secrets)})
        # As the docker builder's key, with the pushed SDK image's digest name standing for its image id.
        key = content_hash({"v": DOCKERFILE_VERSION, "plan": plan.to_json(), "tree": tree, "from": sdk_ref,
                            "args": args, "secrets": sorted(build_secrets)})
        repo = imageregistry.remote_repo(self.settings, self.opts.app_repo)
        artifact = Artifact(kind="docker-image", key=key, ref="",
                            extra={"runtime": "kubernetes", "app_port": plan.app_port, "tree_hash": tree,
                                   "tag": f"{repo}:{key}"})
        if not inputs.no_cache:
            found = self._pushed(f"{repo}:{key}")
            if found:
                log(f"image {repo}@{found} already in the registry for this tree and plan; nothing to build")
                return replace(artifact, ref=f"{repo}@{found}")
        labels = {"spacehub.key": key, "spacehub.recipe": plan.recipe}
        cache = f"{repo}:cache-{plan_key[:32]}"
        if plan.recipe == "docker":
            digest = self._run(src, f"{repo}:{key}", key, args, build_secrets, labels, cache, inputs.no_cache,
                               deadline, log)
        else:
            with gradio_context(self.settings, src, plan, sdk_ref, gradio) as ctx:
                digest = self._run(ctx, f"{repo}:{key}", key, {}, {}, labels, cache, inputs.no_cache, deadline, log)
        return replace(artifact, ref=f"{repo}@{digest}")

    def artifact_exists(self, artifact: Artifact) -> bool:
        if artifact.kind == "static":
            return Path(artifact.ref).is_dir()
        return registry_has(self.settings, artifact.ref)

    # -- the SDK image --------------------------------------------------------------------------------------

    def _sdk_image(self, python_version: str, gradio: str, log: LogFn, deadline: float) -> str:
        """The SDK image (base + gradio) in the registry, by digest: built by a Job the first time."""
        images.check_python_version(self.settings, python_version)
        images.check_gradio_version(gradio)
        base = self.opts.base_image_for(python_version)
        repo = imageregistry.remote_repo(self.settings, self.opts.sdk_repo)
        key = content_hash({"v": SDK_VERSION, "base": base, "python": python_version, "gradio": gradio})
        tag = f"{repo}:py{python_version}-gradio{gradio}-{key[:12]}"
        found = self._pushed(tag)
        if found:
            log(f"SDK image {repo}@{found} already in the registry")
            return f"{repo}@{found}"
        log(f"building SDK image {tag} (from {base})")
        scratch = self.settings.data_dir / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sdk-", dir=scratch) as tmp:
            ctx = Path(tmp)
            images.prepare_context(ctx)  # a cluster's base is any registry image: always prepared here
            (ctx / "Dockerfile").write_text(images.sdk_dockerfile(base, python_version, gradio, prepared=False))
            labels = {"spacehub.sdk": "gradio", "spacehub.gradio-version": gradio,
                      "spacehub.python-version": python_version}
            digest = self._run(ctx, tag, key, {}, {}, labels, None, False, deadline, log)
        return f"{repo}@{digest}"

    # -- one build Job ----------------------------------------------------------------------------------------

    def _pushed(self, ref: str) -> str | None:
        try:
            return registryhttp.manifest_digest(self.settings, ref)
        except registryhttp.RegistryError as exc:
            raise BuildFailed(str(exc)) from None

    def _run(self, context: Path, target: str, key: str, args: Mapping[str, str], build_secrets: Mapping[str, str],
             labels: Mapping[str, str], cache: str | None, no_cache: bool, deadline: float, log: LogFn) -> str:
        """Build `context` in a Job and push it as `target`; return the pushed digest."""
        remaining = int(deadline - time.monotonic())
        if remaining <= 0:
            raise BuildFailed("build timed out before the image build started")
        settings = self.settings
        host = str(settings.kube_build_context_host)
        scratch = settings.data_dir / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="context-", dir=scratch)))
            sha = buildcontext.pack(context, tmp / "context.tar")
            url = stack.enter_context(buildcontext.serve(tmp / "context.tar", host, settings.kube_build_context_ports))
            sources = stack.enter_context(pkgsources.serve_sources(
                settings.pip_index_url, list(settings.pip_extra_index_urls), list(settings.pip_find_links), host,
                self.opts.uv_index_strategy, pkgsources.port_range(settings.kube_build_context_ports)))
            registry_config = None
            if settings.registry_username and settings.registry:
                password = settings.registry_password.get_secret_value() if settings.registry_password else ""
                registry_config = buildobjects.docker_config(settings.registry, settings.registry_username, password)
            spec = buildobjects.BuildJob(
                namespace=self.namespace, instance=_instance(settings),
                name=buildobjects.job_name(key, secrets.token_hex(3)), key=key, image=settings.kube_build_image,
                target=target, context_sha256=sha, deadline_s=remaining, ttl_s=settings.kube_build_ttl_s,
                cpus=settings.kube_build_cpus, memory_gb=settings.kube_build_memory_gb,
                disk_gb=settings.kube_build_disk_gb, build_args=dict(args), labels=dict(labels),
                secret_ids=tuple(sorted(build_secrets)), registry_auth=registry_config is not None,
                cache_ref=cache, no_cache=no_cache)
            inputs = buildobjects.inputs_secret(spec, url, build_secrets, sources.env_script(), registry_config)
            try:
                self.cluster.create_secret(self.namespace, inputs)
                self.cluster.create_job(self.namespace, buildobjects.job(spec))
                log(f"build job {spec.name} (namespace {self.namespace}, {settings.kube_build_image})")
                return self._follow(spec, deadline, _masker(list(build_secrets.values())), log)
            finally:
                # Whatever happened (a failure, a timeout, a newer push cancelling this build via `log`).
                self.cluster.delete_job(self.namespace, spec.name)
                self.cluster.delete_secret(self.namespace, spec.inputs_secret)
        raise AssertionError("unreachable")  # ExitStack may swallow exceptions as far as mypy knows

    def _follow(self, spec: buildobjects.BuildJob, deadline: float, mask: re.Pattern[str] | None,
                log: LogFn) -> str:
        """Wait for the build to start, stream its log as it is written, then read the pushed digest back."""
        pod = self._wait(spec, deadline, started=True)
        for line in self.cluster.follow_log(self.namespace, pod["metadata"]["name"], "buildkit"):
            log(mask.sub(_MASK, line) if mask else line)
        pod = self._wait(spec, deadline, started=False)
        ended = _container(pod, "buildkit", init=False).get("terminated") or {}
        code = int(ended.get("exitCode", -1))
        if code != 0:
            raise BuildFailed(f"image build failed (buildkit exit {code}"
                              + (f", {ended['reason']}" if ended.get("reason") not in (None, "Error") else "") + ")")
        digest = str(ended.get("message") or "").strip()
        if not DIGEST.match(digest):
            raise BuildFailed(f"the build pushed {spec.target} but reported no digest")
        log(f"pushed {spec.target.rpartition(':')[0]}@{digest}")
        return digest

    def _wait(self, spec: buildobjects.BuildJob, deadline: float, started: bool) -> dict[str, Any]:
        """The build pod once its BuildKit container runs (`started`) or has ended; BuildFailed if the Job failed
        first (the deadline: a timeout), the context could not be fetched, or the image cannot be pulled."""
        # Past the Job's own deadline (kept by the cluster), give the cluster a moment to say so.
        give_up = deadline + 30 * self.settings.kube_build_poll_s
        while True:
            job = self.cluster.job(self.namespace, spec.name)
            for cond in ((job or {}).get("status") or {}).get("conditions") or []:
                if cond.get("type") == "Failed" and cond.get("status") == "True":
                    if cond.get("reason") == "DeadlineExceeded":
                        raise BuildFailed(f"build timed out after {self.settings.build_timeout_s}s")
                    pod = self.cluster.job_pod(self.namespace, spec.name)
                    if pod is None or not _container(pod, "buildkit", init=False).get("terminated"):
                        raise BuildFailed(f"build job failed: {cond.get('message') or cond.get('reason')}")
            pod = self.cluster.job_pod(self.namespace, spec.name)
            if pod is not None:
                fetch = _container(pod, "fetch-context", init=True)
                if int((fetch.get("terminated") or {}).get("exitCode", 0)) != 0:
                    raise BuildFailed("the build pod could not fetch the build context from this worker "
                                      "(SPACEHUB_KUBE_BUILD_CONTEXT_HOST / _PORTS, the builds NetworkPolicy)")
                for name, init in (("fetch-context", True), ("buildkit", False)):
                    waiting = _container(pod, name, init).get("waiting") or {}
                    if waiting.get("reason") in _STUCK:
                        raise BuildFailed(f"build pod cannot start: {waiting['reason']}: "
                                          f"{waiting.get('message') or ''}".rstrip(": "))
                state = _container(pod, "buildkit", init=False)
                if state.get("terminated") or (started and state.get("running")):
                    return pod
            if time.monotonic() > give_up:
                raise BuildFailed(f"build timed out after {self.settings.build_timeout_s}s")
            time.sleep(self.settings.kube_build_poll_s)


def _container(pod: Mapping[str, Any], name: str, init: bool) -> dict[str, Any]:
    """The state of one container of the pod ({} when the kubelet has not reported it yet)."""
    statuses = (pod.get("status") or {}).get("initContainerStatuses" if init else "containerStatuses") or []
    for status in statuses:
        if status.get("name") == name:
            return dict(status.get("state") or {})
    return {}


def _instance(settings: Settings) -> str:
    from ..runtimes.docker import instance_id

    return instance_id(settings)


def registry_has(settings: Settings, ref: str) -> bool:
    """Whether a digest-named image is still in the registry (an unreachable registry: no, so the job rebuilds,
    and its push says why if that fails too)."""
    if not imageregistry.is_digest_ref(ref):
        return False
    try:
        return registryhttp.manifest_digest(settings, ref) is not None
    except registryhttp.RegistryError:
        return False


class ClientCluster:
    """BuildCluster over the official `kubernetes` client (in-cluster config, or SPACEHUB_KUBE_CONFIG)."""

    def __init__(self, settings: Settings) -> None:
        from kubernetes import client as k8s

        from ..kube.runtime import api_client

        # A log stream read with no limit would hang on a connection that died silently; a build may print
        # nothing for a while, but never for longer than it may run.
        self.log_timeout = (30.0, float(settings.build_timeout_s))
        api = api_client(settings)
        self.core: Any = k8s.CoreV1Api(api)
        self.batch: Any = k8s.BatchV1Api(api)

    def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        self.core.create_namespaced_secret(namespace, body)

    def delete_secret(self, namespace: str, name: str) -> None:
        _gone_is_fine(self.core.delete_namespaced_secret, name, namespace)

    def create_job(self, namespace: str, body: dict[str, Any]) -> None:
        self.batch.create_namespaced_job(namespace, body)

    def delete_job(self, namespace: str, name: str) -> None:
        # Background: the Job's pods are deleted with it (the default, Orphan, would leave them running).
        _gone_is_fine(self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background")

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _read(self.batch.read_namespaced_job, name, namespace)

    def job_pod(self, namespace: str, job_name: str) -> dict[str, Any] | None:
        import json

        answer = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}",
                                               _preload_content=False)
        items = json.loads(answer.data).get("items") or []
        return dict(items[0]) if items else None

    def follow_log(self, namespace: str, pod: str, container: str) -> Iterator[str]:
        answer = self.core.read_namespaced_pod_log(pod, namespace, container=container, follow=True,
                                                   _preload_content=False, _request_timeout=self.log_timeout)
        import urllib3

        try:
            yield from lines_of(answer.stream(4096))
        except urllib3.exceptions.HTTPError:
            return  # the stream broke (or stayed silent past the limit): the pod's state says how the build ended
        finally:
            answer.release_conn()


def lines_of(chunks: Iterator[bytes]) -> Iterator[str]:
    """Whole lines from a byte stream cut anywhere (the pod log API sends what the container wrote, as it does)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for raw in whole:
            yield raw.decode("utf-8", "replace").rstrip("\r")
    if pending:
        yield pending.decode("utf-8", "replace").rstrip("\r")


def _gone_is_fine(call: Any, *args: Any, **kwargs: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        call(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _read(call: Any, *args: Any) -> dict[str, Any] | None:
    import json

    from kubernetes.client.exceptions import ApiException

    try:
        answer = call(*args, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(json.loads(answer.data))
