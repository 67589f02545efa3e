"""The Kubernetes runtime (SPACEHUB_RUNTIME=kubernetes): one bare Pod + Service per running revision, made from
the pure manifests of `objects` / `manifests`, status from one watch of this platform's pods (`reflector`).

It uses the official `kubernetes` client: maintained with Kubernetes itself, it speaks plain dict bodies (the
manifests stay data), has the list-then-watch helper a reflector needs, and loads both in-cluster service
account credentials and kubeconfig files. (lightkube is lighter but typed-model-first; the async client would
not fit the synchronous plug points.)

The handle's target is the Service's cluster DNS name (`<pod>.<namespace>.svc:<port>`): the proxy, the workers
and the supervisor run in the cluster (deploy/kubernetes/), the only pods the namespace's NetworkPolicy lets in.
Kubernetes has no pause, so freezing is not offered: sleep deletes the pod, wake creates it again. Images must
come from SPACEHUB_REGISTRY (a node cannot pull an image that only the building engine has).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from spacehub.errors import StartFailed
from spacehub.settings import Settings

from .. import imageregistry
from ..plugs import Artifact, Handle, RunSpec
from ..runtimes.docker import instance_id
from . import manifests, objects, podstatus
from .reflector import Gone, PodReflector


def api_client(settings: Settings) -> k8s.ApiClient:
    """SPACEHUB_KUBE_CONFIG, else the pod's service account (in-cluster), else $KUBECONFIG / ~/.kube/config."""
    if settings.kube_config is not None:
        return k8s_config.new_client_from_config(config_file=str(settings.kube_config))
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        return k8s_config.new_client_from_config()
    return k8s.ApiClient(configuration)


class KubernetesRuntime:
    name = "kubernetes"

    def __init__(self, settings: Settings, api: k8s.CoreV1Api | None = None,
                 reflector: PodReflector | None = None) -> None:
        self.settings = settings
        self.namespace = settings.kube_namespace
        self.instance = instance_id(settings)
        self._api = api
        self._reflector = reflector

    @property
    def api(self) -> Any:
        # Typed as Any: bodies go in as plain dicts and answers come back raw (`_preload_content=False`), which
        # the client's model annotations do not describe.
        if self._api is None:
            self._api = k8s.CoreV1Api(api_client(self.settings))
        return self._api

    @property
    def selector(self) -> str:
        return f"{objects.MANAGED}=1,{objects.INSTANCE}={self.instance}"

    @property
    def reflector(self) -> PodReflector:
        """The watch of this platform's pods, started on first use (never at import or construction)."""
        if self._reflector is None:
            self._reflector = PodReflector(self._list_pods, self._watch_pods, self.settings.kube_watch_timeout_s,
                                           self.settings.kube_watch_retry_s)
            self._reflector.start()
        return self._reflector

    # -- the Runtime protocol ---------------------------------------------------------------------------

    def start(self, spec: RunSpec, artifact: Artifact) -> Handle:
        """Create the revision's Secret, the space's claim (once), its Pod and Service; return at once."""
        if artifact.kind != "docker-image":
            raise StartFailed(f"the kubernetes runtime cannot run a {artifact.kind!r} artifact")
        if not imageregistry.is_digest_ref(artifact.ref):
            raise StartFailed(f"image {artifact.ref} is not in a registry: the kubernetes runtime runs images "
                              "pushed to SPACEHUB_REGISTRY, by digest")
        made = manifests.space_manifests(self.settings, spec, artifact.ref, self.instance,
                                         suffix=secrets.token_hex(3))
        created: list[dict[str, Any]] = []
        try:
            for obj in made:
                if obj["kind"] == "PersistentVolumeClaim":
                    self._ensure_claim(obj)
                    continue
                self._create(obj)
                created.append(obj)
        except ApiException as exc:
            refused = obj["kind"]
            for made_obj in reversed(created):  # nothing half-made stays behind
                self._delete(made_obj["kind"], made_obj["metadata"]["name"])
            raise StartFailed(f"the cluster refused the space's {refused}: {_explain(exc)}") from None
        pod = next(obj for obj in made if obj["kind"] == "Pod")
        return _handle(pod)

    def stop(self, handle: Handle) -> None:
        """Delete the pod (SIGTERM, then SIGKILL after the grace), its Service and env Secret. Idempotent."""
        name = str(handle.data.get("name") or "")
        if not name:
            return
        self._delete("Pod", name)
        self._delete("Service", name)
        self._delete("Secret", objects.env_secret_name(name))

    def poll(self, handle: Handle) -> int | None:
        """None while the pod starts or runs; its exit code once it ended (125: it could not start); -1: gone."""
        pod = self._pod(handle)
        return -1 if pod is None else podstatus.read(pod).exit_code

    def state(self, handle: Handle) -> podstatus.PodState | None:
        """The pod's stage and message (why it waits or failed), or None when it is gone."""
        pod = self._pod(handle)
        return None if pod is None else podstatus.read(pod)

    def logs(self, handle: Handle) -> Iterator[str]:
        """The app's log lines (the pod log API), then, when the pod waits or failed, why."""
        name = str(handle.data.get("name") or "")
        lines: list[str] = []
        try:
            text = self.api.read_namespaced_pod_log(name, self.namespace, container="app")
            lines = str(text).splitlines()
        except ApiException:
            pass  # not started yet (400) or gone (404): the state below says which
        state = self.state(handle)
        if state is not None and state.stage != podstatus.Stage.RUNNING:
            lines.append(f"[kubernetes] {state.message}")
        return iter(lines)

    # -- ManagedResources -----------------------------------------------------------------------------------

    def list_managed(self) -> list[Handle]:
        pods = self.reflector.pods() if self.reflector.synced else self._list_pods()[0]
        pods.sort(key=lambda pod: pod["metadata"].get("creationTimestamp") or "", reverse=True)
        return [_handle(pod) for pod in pods]

    # -- Storage: one PVC per space ---------------------------------------------------------------------------

    def volume_name(self, space_id: int) -> str:
        return objects.claim_name(space_id)

    def list_volumes(self) -> dict[str, int]:
        found = self.api.list_namespaced_persistent_volume_claim(self.namespace, label_selector=self.selector,
                                                                 _preload_content=False)
        items = json.loads(found.data).get("items", [])
        return {item["metadata"]["name"]: int(item["metadata"]["labels"][objects.SPACE]) for item in items}

    def remove_volume(self, name: str) -> None:
        self._delete("PersistentVolumeClaim", name)

    # -- API calls ------------------------------------------------------------------------------------------

    def _pod(self, handle: Handle) -> dict[str, Any] | None:
        name = str(handle.data.get("name") or "")
        pod = self.reflector.get(name)
        if pod is not None:
            return pod
        # Not seen by the watch (yet): ask once, so a pod created a moment ago is not taken for gone.
        try:
            answer = self.api.read_namespaced_pod(name, self.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(json.loads(answer.data))

    def _create(self, obj: dict[str, Any]) -> None:
        create = {"Secret": self.api.create_namespaced_secret, "Pod": self.api.create_namespaced_pod,
                  "Service": self.api.create_namespaced_service}[obj["kind"]]
        create(self.namespace, obj)

    def _ensure_claim(self, obj: dict[str, Any]) -> None:
        try:
            self.api.create_namespaced_persistent_volume_claim(self.namespace, obj)
        except ApiException as exc:
            if exc.status != 409:  # 409: the space's claim exists (kept across restarts and sleep)
                raise

    def _delete(self, kind: str, name: str) -> None:
        delete = {"Secret": self.api.delete_namespaced_secret, "Pod": self.api.delete_namespaced_pod,
                  "Service": self.api.delete_namespaced_service,
                  "PersistentVolumeClaim": self.api.delete_namespaced_persistent_volume_claim}[kind]
        kwargs: dict[str, Any] = {}
        if kind == "Pod":
            kwargs["grace_period_seconds"] = max(1, round(self.settings.stop_grace_s))
        with contextlib.suppress(_NotFound):
            try:
                delete(name, self.namespace, **kwargs)
            except ApiException as exc:
                if exc.status == 404:
                    raise _NotFound from None
                raise

    def _list_pods(self) -> tuple[list[dict[str, Any]], str]:
        answer = self.api.list_namespaced_pod(self.namespace, label_selector=self.selector, _preload_content=False)
        body = json.loads(answer.data)
        return list(body.get("items", [])), str(body.get("metadata", {}).get("resourceVersion", ""))

    def _watch_pods(self, resource_version: str, timeout_s: int) -> Iterable[Mapping[str, Any]]:
        stream = k8s_watch.Watch().stream(self.api.list_namespaced_pod, self.namespace,
                                          label_selector=self.selector, resource_version=resource_version,
                                          timeout_seconds=timeout_s)
        try:
            for event in stream:
                yield {"type": event["type"], "object": event.get("raw_object") or {}}
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc)) from None
            raise


class _NotFound(Exception):
    pass


def _handle(pod: dict[str, Any]) -> Handle:
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    port = int(labels.get(objects.APP_PORT, "7860"))
    name = meta["name"]
    namespace = meta.get("namespace", "")
    return Handle(
        runtime="kubernetes",
        target=f"{name}.{namespace}.svc:{port}",
        data={
            "name": name,
            "namespace": namespace,
            "container_id": name,  # unique per start (ManagedResources' key)
            "space_id": int(labels.get(objects.SPACE, "0")),
            "revision": labels.get(objects.REVISION, ""),
            "app_port": port,
            "created": meta.get("creationTimestamp") or "",
        },
    )


def _explain(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)
