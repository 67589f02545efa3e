"""Kubernetes objects of one image build, as pure functions (data in, dicts out), like `objects` for spaces.

A build is one Job in the builds namespace running rootless BuildKit daemonless (`buildctl-daemonless.sh`, the
upstream `moby/buildkit:<version>-rootless` image, as BinderHub's and BuildKit's own Kubernetes examples do): no
Docker engine, no privileged pod, no host socket. Per build:

- one Secret (`<job>-inputs`) with what must never be in the Job spec or an image: the URL of the build context
  (it carries a one-time token), the space's build secrets (handed to BuildKit as `--secret id=NAME,src=FILE`, so a
  `RUN --mount=type=secret,id=NAME` sees them and no layer keeps them), the package sources file uv reads, and the
  registry credentials BuildKit pushes with (`$DOCKER_CONFIG/config.json`). Each container mounts only its items.
- one Job: an init container fetches the context tarball from the worker that prepared it (checked against its
  SHA-256) into an emptyDir; the BuildKit container builds it with the same Dockerfile and context the docker builder
  makes, pushes `<registry>/<repo>:<key>` and writes the pushed digest (from `--metadata-file`) as its termination
  message, where the worker reads it back. `activeDeadlineSeconds` is the build timeout, `backoffLimit: 0` (a failed
  build is reported, not retried), `ttlSecondsAfterFinished` removes what a crashed worker did not delete.

Rootless BuildKit needs what the `restricted` and `baseline` Pod Security Standards forbid: seccomp and AppArmor
`Unconfined` (its user namespaces mount /proc), and setuid `newuidmap` (so privilege escalation stays allowed).
That is why builds run in their own namespace, never the spaces' one, under a NetworkPolicy of their own. The init
container, which touches the network before anything is checked, runs fully restricted.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .objects import BLOCKED_NETS, INSTANCE, MANAGED, MANAGED_BY, PLATFORM, PLATFORM_COMPONENT, PLATFORM_NAME, UID

BUILD_KEY = "spacehub.build-key"
WORKSPACE = "/workspace"
CONTEXT_DIR = f"{WORKSPACE}/context"
METADATA_FILE = f"{WORKSPACE}/metadata.json"
SECRETS_DIR = "/run/spacehub/secrets"
REGISTRY_DIR = "/run/spacehub/registry"
CONTEXT_URL_DIR = "/run/spacehub/context"
SOURCES_ID = "spacehub-pkgsrc"  # = pkgsources.SECRET_ID: the file uv's RUN lines load
BUILDKIT_STATE = "/home/user/.local/share/buildkit"  # the rootless image's HOME is /home/user (uid 1000)
DIGEST_PATTERN = "sha256:[0-9a-f]{64}"

# Fetch and check the context; nothing of it is trusted before its SHA-256 matches what the worker sent.
FETCH_SCRIPT = (
    'set -eu; wget -q -O /workspace/context.tar "$(cat /run/spacehub/context/url)"; '
    'echo "$CONTEXT_SHA256  /workspace/context.tar" | sha256sum -c -; '
    "mkdir /workspace/context; tar -x -f /workspace/context.tar -C /workspace/context; rm /workspace/context.tar"
)
# Build, then leave the pushed digest where the kubelet reads the termination message from. The buildctl arguments
# come as "$@" (the Job's args): no value is ever pasted into shell text.
BUILD_SCRIPT = (
    'set -eu; buildctl-daemonless.sh "$@"; '
    "grep -o '\"containerimage.digest\": *\"sha256:[0-9a-f]*\"' /workspace/metadata.json "
    "| grep -o 'sha256:[0-9a-f]*' > /dev/termination-log"
)


@dataclass(frozen=True)
class BuildJob:
    """What one build needs from the cluster. Values of secrets are never here: only their names."""

    namespace: str
    instance: str
    name: str
    key: str  # the artifact's content key (also the pushed tag)
    image: str  # the BuildKit image
    target: str  # `<registry>/<repo>:<key>`: what is pushed
    context_sha256: str
    deadline_s: int
    ttl_s: int
    cpus: float
    memory_gb: float
    disk_gb: float
    build_args: Mapping[str, str] = field(default_factory=dict)  # public values only
    labels: Mapping[str, str] = field(default_factory=dict)
    secret_ids: tuple[str, ...] = ()  # the space's build secrets, by name
    sources: bool = True  # the package sources file (every uv RUN line mounts it)
    registry_auth: bool = False  # push with credentials from the inputs Secret
    cache_ref: str | None = None  # registry cache: layers survive the build pod
    no_cache: bool = False

    @property
    def inputs_secret(self) -> str:
        return f"{self.name}-inputs"


def job_name(key: str, suffix: str) -> str:
    return f"build-{key[:12].lower()}-{suffix}"


def build_labels(instance: str, key: str) -> dict[str, str]:
    return {MANAGED: "1", MANAGED_BY: PLATFORM, INSTANCE: instance, BUILD_KEY: key[:63]}


def docker_config(registry: str, username: str, password: str) -> str:
    """A Docker client config with the registry's credentials: what BuildKit reads to push and pull."""
    host = registry.split("/", 1)[0]
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth}}}, sort_keys=True)


def inputs_secret(job: BuildJob, context_url: str, secrets: Mapping[str, str], sources: str,
                  registry_config: str | None) -> dict[str, Any]:
    """The build's inputs that must stay out of the Job spec, as one Secret (values base64, as the API keeps them)."""
    if sorted(secrets) != sorted(job.secret_ids):
        raise ValueError("the build's secret names and values do not match")
    data = {"context-url": context_url, SOURCES_ID: sources}
    data.update({f"secret.{name}": value for name, value in secrets.items()})
    if registry_config is not None:
        data["config.json"] = registry_config
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": job.inputs_secret, "namespace": job.namespace,
                     "labels": build_labels(job.instance, job.key)},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(data.items())},
    }


def buildctl_args(job: BuildJob) -> list[str]:
    """The arguments of `buildctl-daemonless.sh`: the docker builder's build, as BuildKit's own client says it."""
    args = ["build", "--progress=plain", "--frontend=dockerfile.v0",
            f"--local=context={CONTEXT_DIR}", f"--local=dockerfile={CONTEXT_DIR}", "--opt=filename=Dockerfile"]
    args += [f"--opt=build-arg:{name}={value}" for name, value in sorted(job.build_args.items())]
    args += [f"--opt=label:{name}={value}" for name, value in sorted(job.labels.items())]
    args += [f"--secret=id={name},src={SECRETS_DIR}/secret.{name}" for name in sorted(job.secret_ids)]
    if job.sources:
        args.append(f"--secret=id={SOURCES_ID},src={SECRETS_DIR}/{SOURCES_ID}")
    if job.no_cache:
        args.append("--no-cache")
    elif job.cache_ref:
        args.append(f"--import-cache=type=registry,ref={job.cache_ref}")
    if job.cache_ref:
        args.append(f"--export-cache=type=registry,ref={job.cache_ref},mode=max")
    args += [f"--output=type=image,name={job.target},push=true", f"--metadata-file={METADATA_FILE}"]
    return args


def _restricted() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "allowPrivilegeEscalation": False,
            "privileged": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def job(job: BuildJob) -> dict[str, Any]:
    """The build's Job (see the module's notes for what runs in it and why it is shaped so)."""
    size = {"cpu": f"{round(job.cpus * 1000)}m", "memory": f"{round(job.memory_gb * 1024)}Mi",
            "ephemeral-storage": f"{round(job.disk_gb * 1024)}Mi"}
    secret_items = [{"key": f"secret.{name}", "path": f"secret.{name}"} for name in sorted(job.secret_ids)]
    if job.sources:
        secret_items.append({"key": SOURCES_ID, "path": SOURCES_ID})
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "emptyDir": {}},
        {"name": "buildkit", "emptyDir": {}},
        {"name": "context-url", "secret": {"secretName": job.inputs_secret, "defaultMode": 0o440,
                                           "items": [{"key": "context-url", "path": "url"}]}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": WORKSPACE},
        {"name": "buildkit", "mountPath": BUILDKIT_STATE},
    ]
    if secret_items:
        volumes.append({"name": "build-secrets", "secret": {"secretName": job.inputs_secret, "defaultMode": 0o440,
                                                            "items": secret_items}})
        mounts.append({"name": "build-secrets", "mountPath": SECRETS_DIR, "readOnly": True})
    env = [{"name": "BUILDKITD_FLAGS", "value": "--oci-worker-no-process-sandbox"}]
    if job.registry_auth:
        volumes.append({"name": "registry-auth", "secret": {"secretName": job.inputs_secret, "defaultMode": 0o440,
                                                            "items": [{"key": "config.json",
                                                                       "path": "config.json"}]}})
        mounts.append({"name": "registry-auth", "mountPath": REGISTRY_DIR, "readOnly": True})
        env.append({"name": "DOCKER_CONFIG", "value": REGISTRY_DIR})
    fetch = {
        "name": "fetch-context",
        "image": job.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", FETCH_SCRIPT],
        "env": [{"name": "CONTEXT_SHA256", "value": job.context_sha256}],
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE},
                         {"name": "context-url", "mountPath": CONTEXT_URL_DIR, "readOnly": True}],
        "resources": {"requests": dict(size), "limits": dict(size)},
        "securityContext": _restricted(),
    }
    buildkit = {
        "name": "buildkit",
        "image": job.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", BUILD_SCRIPT, "buildctl"],
        "args": buildctl_args(job),
        "env": env,
        "volumeMounts": mounts,
        "resources": {"requests": dict(size), "limits": dict(size)},
        "securityContext": {
            # Rootless BuildKit (BuildKit's docs/rootless.md): uid 1000, its own user namespace, which needs
            # setuid newuidmap (no `allowPrivilegeEscalation: false`) and an unconfined seccomp profile.
            "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "privileged": False,
            "seccompProfile": {"type": "Unconfined"},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    label_set = build_labels(job.instance, job.key)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job.name, "namespace": job.namespace, "labels": dict(label_set)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(job.deadline_s),
            "ttlSecondsAfterFinished": int(job.ttl_s),
            "template": {
                "metadata": {
                    "labels": dict(label_set),
                    # The annotation, not the 1.30+ field: it is what 1.28 knows, and later versions still honour it.
                    "annotations": {"container.apparmor.security.beta.kubernetes.io/buildkit": "unconfined"},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID},
                    "initContainers": [fetch],
                    "containers": [buildkit],
                    "volumes": volumes,
                },
            },
        },
    }


def network_policy(namespace: str, platform_namespace: str, context_ports: tuple[int, int],
                   registry_port: int = 443) -> dict[str, Any]:
    """The builds namespace's NetworkPolicy: nothing comes in; out, only cluster DNS, the workers' context ports
    (the fetch), and the public internet on 80/443 (and the registry's port): package indexes, base images, the
    registry. Never private, loopback or link-local addresses, so no service of the cluster and no metadata
    address, whatever a Dockerfile's RUN line tries."""
    first, last = context_ports
    context_port: dict[str, Any] = {"protocol": "TCP", "port": first}
    if last > first:
        context_port["endPort"] = last
    public = sorted({80, 443, int(registry_port)})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "spacehub-builds", "namespace": namespace, "labels": {MANAGED_BY: PLATFORM}},
        "spec": {
            "podSelector": {"matchLabels": {MANAGED: "1", MANAGED_BY: PLATFORM}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                 "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": platform_namespace}},
                         "podSelector": {"matchLabels": {PLATFORM_NAME: PLATFORM, PLATFORM_COMPONENT: "worker"}}}],
                 "ports": [context_port]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(BLOCKED_NETS)}}],
                 "ports": [{"protocol": "TCP", "port": port} for port in public]},
            ],
        },
    }


# The builder's rights in the builds namespace: its Jobs and their inputs Secrets, and reading its pods' state and
# logs. Secrets: create and delete only. Nothing cluster-wide, no exec.
BUILDER_RULES: tuple[dict[str, Any], ...] = (
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", "get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]},
)


def builder_role(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "spacehub-builder", "namespace": namespace, "labels": {MANAGED_BY: PLATFORM}},
        "rules": [dict(rule) for rule in BUILDER_RULES],
    }


def builder_role_binding(namespace: str, service_account: str, platform_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "spacehub-builder", "namespace": namespace, "labels": {MANAGED_BY: PLATFORM}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "spacehub-builder"},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": platform_namespace}],
    }
