"""Kubernetes manifests for spaces, as pure functions: plain data in, plain dicts out (no client, no cluster).

Everything security-relevant about a space on a cluster is decided here, so it is tested without one
(tests/kubernetes: golden files, and every object checked against the official OpenAPI schemas).

One bare Pod (restartPolicy Never) + one ClusterIP Service per running revision, not a Deployment: the platform
owns restarts and their backoff (SPACEHUB_RESTART_BACKOFF_S, SPACEHUB_MAX_RESTARTS) and reads an app's exit code
as the docker runtime's does; a Deployment would restart a crashed app on its own and hide that code. Sleep deletes
the pod; wake creates it again. (KubeSpawner does the same for the same reasons.)

Pods meet the `restricted` Pod Security Standard: uid/gid 1000, non-root, no privilege escalation, every
capability dropped, the RuntimeDefault seccomp profile, no service account token, no service links; the root
filesystem is read-only unless the flavor's placement says otherwise (then /tmp, /var/tmp and ~/.cache are
emptyDirs), and ephemeral storage is capped at the flavor's `disk_gb`.

A space's env (its variables, secrets and SPACE_* values, merged in RunSpec.env) goes into one Secret per revision,
read with envFrom: no value of the space's ever appears in the pod spec. The pod spec's own `env` holds only the
platform's fixed values, which win over any same-named key of the Secret.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spacehub.hardware import Flavor
from spacehub.kubeplacement import GPU_RESOURCE, Placement

# The docker runtime's label keys, so both runtimes' resources read alike (space, revision, platform instance).
MANAGED = "spacehub.managed"
INSTANCE = "spacehub.instance"
SPACE = "spacehub.space"
REVISION = "spacehub.revision"
APP_PORT = "spacehub.app-port"
SPACE_KEY = "spacehub.space-key"  # an annotation: "owner/name" is not a valid label value
MANAGED_BY = "app.kubernetes.io/managed-by"

# The platform's own pods (deploy/kubernetes/) carry these; only they may open connections to spaces.
PLATFORM_NAME = "app.kubernetes.io/name"
PLATFORM_COMPONENT = "app.kubernetes.io/component"
PLATFORM = "spacehub"
CALLERS = ("proxy", "worker", "supervisor")  # the proxy serves spaces; workers and supervisor probe readiness

UID = 1000
DATA_DIR = "/data"
HOME = "/home/user"
WRITABLE = {"tmp": "/tmp", "var-tmp": "/var/tmp", "cache": f"{HOME}/.cache"}
# Never reachable from a space: private, loopback, link-local (the metadata address), shared and multicast nets.
BLOCKED_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                "100.64.0.0/10", "224.0.0.0/4", "0.0.0.0/8")


@dataclass(frozen=True)
class SpacePod:
    """What one running revision of one space needs from the cluster."""

    namespace: str
    instance: str  # the platform instance's mark (as on docker containers)
    space_id: int
    space_key: str
    revision: str
    image: str  # by digest, from the registry
    app_port: int
    flavor: Flavor
    placement: Placement
    storage_claim: str | None = None  # the space's PVC, mounted at /data
    pull_secret: str | None = None  # a dockerconfigjson Secret for the registry
    fixed_env: Mapping[str, str] = field(default_factory=dict)  # the platform's own values (not the space's)
    suffix: str = ""  # a start's own mark: a restart of the same revision never meets its predecessor's name

    @property
    def name(self) -> str:
        return pod_name(self.space_id, self.revision) + (f"-{self.suffix}" if self.suffix else "")


def pod_name(space_id: int, revision: str) -> str:
    return f"space-{int(space_id)}-{revision[:12].lower()}"


def env_secret_name(pod: str) -> str:
    return f"{pod}-env"


def claim_name(space_id: int) -> str:
    return f"space-{int(space_id)}-data"


def labels(instance: str, space_id: int, revision: str | None = None) -> dict[str, str]:
    found = {MANAGED: "1", MANAGED_BY: PLATFORM, INSTANCE: instance, SPACE: str(int(space_id))}
    if revision is not None:
        found[REVISION] = revision
    return found


def _meta(name: str, namespace: str, label_set: Mapping[str, str], **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(label_set)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def quantities(flavor: Flavor) -> dict[str, str]:
    """A flavor's size as Kubernetes quantities (CPU in millicores, memory and disk in MiB)."""
    return {
        "cpu": f"{round(flavor.cpus * 1000)}m",
        "memory": f"{round(flavor.memory_gb * 1024)}Mi",
        "ephemeral-storage": f"{round(flavor.disk_gb * 1024)}Mi",
    }


def pod(spec: SpacePod) -> dict[str, Any]:
    """The space's Pod: restricted, sized by its flavor, placed by its placement, env from its Secret."""
    size = quantities(spec.flavor)
    limits: dict[str, str] = dict(size)
    if spec.flavor.gpus:
        limits[GPU_RESOURCE] = str(spec.flavor.gpus)  # extended resources: the limit is the request
    env = [{"name": key, "value": value} for key, value in sorted(spec.fixed_env.items())]
    if not spec.flavor.gpus:
        # An image's NVIDIA_VISIBLE_DEVICES=all would reach every GPU of the node under NVIDIA's runtime.
        env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"})
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if spec.placement.read_only_root:
        for volume, path in WRITABLE.items():
            mounts.append({"name": volume, "mountPath": path})
            volumes.append({"name": volume, "emptyDir": {}})
    if spec.storage_claim:
        mounts.append({"name": "data", "mountPath": DATA_DIR})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": spec.storage_claim}})
    container: dict[str, Any] = {
        "name": "app",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": int(spec.app_port), "protocol": "TCP"}],
        "env": env,
        "envFrom": [{"secretRef": {"name": env_secret_name(spec.name)}}],
        "resources": {"requests": size, "limits": limits},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": spec.placement.read_only_root,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # The Service sends traffic only once the app's port accepts connections.
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2, "failureThreshold": 1},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # the platform restarts, with its own backoff
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no env vars naming the namespace's other services
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    if spec.placement.node_selector:
        pod_spec["nodeSelector"] = dict(spec.placement.node_selector)
    if spec.placement.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.placement.tolerations]
    if spec.pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": spec.pull_secret}]
    label_set = {**labels(spec.instance, spec.space_id, spec.revision), APP_PORT: str(int(spec.app_port))}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(spec.name, spec.namespace, label_set, **{SPACE_KEY: spec.space_key}),
        "spec": pod_spec,
    }


def service(spec: SpacePod) -> dict[str, Any]:
    """The revision's Service: the address the proxy forwards to (`<name>.<namespace>.svc:<port>`)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec.name, spec.namespace, labels(spec.instance, spec.space_id, spec.revision)),
        "spec": {
            "type": "ClusterIP",
            "selector": labels(spec.instance, spec.space_id, spec.revision),
            "ports": [{"name": "http", "port": int(spec.app_port), "targetPort": "http", "protocol": "TCP"}],
        },
    }


def env_secret(spec: SpacePod, env: Mapping[str, str]) -> dict[str, Any]:
    """The pod's env as a Secret (values base64 in `data`, as the API stores them)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(env_secret_name(spec.name), spec.namespace,
                          labels(spec.instance, spec.space_id, spec.revision)),
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(env.items())},
    }


def pull_secret(namespace: str, name: str, registry: str, username: str, password: str) -> dict[str, Any]:
    """The registry's credentials as kubelet reads them (imagePullSecrets)."""
    host = registry.split("/", 1)[0]
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {"auths": {host: {"username": username, "password": password, "auth": auth}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, namespace, {MANAGED_BY: PLATFORM}),
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config, sort_keys=True).encode()).decode()},
    }


def claim(namespace: str, instance: str, space_id: int, size_gb: int, storage_class: str | None) -> dict[str, Any]:
    """The space's persistent storage: one PVC, kept across restarts and sleep, deleted with the space."""
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{int(size_gb)}Gi"}},
    }
    if storage_class:
        claim_spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(claim_name(space_id), namespace, labels(instance, space_id)),
        "spec": claim_spec,
    }


def _platform_pods(platform_namespace: str, components: tuple[str, ...]) -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": platform_namespace}},
        "podSelector": {"matchLabels": {PLATFORM_NAME: PLATFORM},
                        "matchExpressions": [{"key": PLATFORM_COMPONENT, "operator": "In",
                                              "values": list(components)}]},
    }


def network_policy(namespace: str, platform_namespace: str, public_port: int, internet: bool) -> dict[str, Any]:
    """The spaces namespace's one NetworkPolicy: in, only the platform's proxy (and its readiness probes); out,
    only cluster DNS, the platform's public endpoint (the proxy's port: HF_ENDPOINT) and, where allowed, the
    public internet on 80/443. Never the cluster's other services, other spaces, or the metadata address."""
    egress: list[dict[str, Any]] = [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {"to": [_platform_pods(platform_namespace, ("proxy",))], "ports": [{"protocol": "TCP", "port": public_port}]},
    ]
    if internet:
        egress.append({
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(BLOCKED_NETS)}}],
            "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 443}],
        })
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("spacehub-spaces", namespace, {MANAGED_BY: PLATFORM}),
        "spec": {
            "podSelector": {"matchLabels": {MANAGED: "1", MANAGED_BY: PLATFORM}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [_platform_pods(platform_namespace, CALLERS)]}],
            "egress": egress,
        },
    }


# The runtime's rights in the spaces namespace, and nothing cluster-wide. Secrets: create and delete only (it
# never reads a space's env back); no exec, no attach, no port-forward, no nodes.
RUNTIME_RULES: tuple[dict[str, Any], ...] = (
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete", "get", "list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["create", "delete", "get", "list"]},
)


def runtime_role(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta("spacehub-runtime", namespace, {MANAGED_BY: PLATFORM}),
        "rules": [dict(rule) for rule in RUNTIME_RULES],
    }


def runtime_role_binding(namespace: str, service_account: str, platform_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta("spacehub-runtime", namespace, {MANAGED_BY: PLATFORM}),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "spacehub-runtime"},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": platform_namespace}],
    }
