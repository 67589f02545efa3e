"""KubernetesRuntime without a cluster: a recorded stream of pod watch events (pending, running, OOMKilled, image
pull error, unschedulable, evicted, deleted) fed through its reflector drives the right stages, messages and exit
codes; start and stop send the pure manifests to the API and undo a half-made start.

The API client is a stub that records calls (this is the logic above the client; nothing here talks to a
cluster, and the contract suite runs the runtime against a real one when SPACEHUB_TEST_KUBECONFIG is set).
The events are written in the API's JSON shapes (tests/kubernetes/recorded/pod-watch-events.json); they were not
captured from a live cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubekit import INSTANCE, K8S_VERSIONS, REVISION, kube_settings, spec
from kubernetes.client.exceptions import ApiException

from spacehub.errors import StartFailed
from spacehub.settings import Settings
from spacehub_runner import backends as backends
from spacehub_runner import gpus
from spacehub_runner.kube import objects, podstatus
from spacehub_runner.kube.reflector import Gone, PodReflector
from spacehub_runner.kube.runtime import KubernetesRuntime, _handle
from spacehub_runner.plugs import Artifact, Handle, WiredRuntime

EVENTS = json.loads((Path(__file__).parent / "recorded" / "pod-watch-events.json").read_text())
DIGEST = "registry.example.com/spacehub/app@sha256:" + "cd" * 32


class StubApi:
    """Records what the runtime asks of CoreV1Api; `fail` makes one kind's create answer an error."""

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.existing: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail = fail or {}

    def _create(self, kind: str, body: dict[str, Any]) -> None:
        self.calls.append(("create", kind, body))
        if kind in self.fail:
            raise ApiException(status=self.fail[kind], reason="Forbidden")
        key = (kind, body["metadata"]["name"])
        if key in self.existing:
            raise ApiException(status=409, reason="AlreadyExists")
        self.existing[key] = body

    def _delete(self, kind: str, name: str) -> None:
        self.calls.append(("delete", kind, name))
        if self.existing.pop((kind, name), None) is None:
            raise ApiException(status=404, reason="NotFound")

    def create_namespaced_secret(self, ns: str, body: dict[str, Any]) -> None:
        self._create("Secret", body)

    def create_namespaced_pod(self, ns: str, body: dict[str, Any]) -> None:
        self._create("Pod", body)

    def create_namespaced_service(self, ns: str, body: dict[str, Any]) -> None:
        self._create("Service", body)

    def create_namespaced_persistent_volume_claim(self, ns: str, body: dict[str, Any]) -> None:
        self._create("PersistentVolumeClaim", body)

    def delete_namespaced_secret(self, name: str, ns: str) -> None:
        self._delete("Secret", name)

    def delete_namespaced_pod(self, name: str, ns: str, grace_period_seconds: int = 30) -> None:
        self._delete("Pod", name)

    def delete_namespaced_service(self, name: str, ns: str) -> None:
        self._delete("Service", name)

    def delete_namespaced_persistent_volume_claim(self, name: str, ns: str) -> None:
        self._delete("PersistentVolumeClaim", name)

    def read_namespaced_pod(self, name: str, ns: str, **_: Any) -> Any:
        raise ApiException(status=404, reason="NotFound")

    def read_namespaced_pod_log(self, name: str, ns: str, **_: Any) -> str:
        return "app line 1\napp line 2\n"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return kube_settings(tmp_path)


def _reflector(events: list[dict[str, Any]]) -> PodReflector:
    def watch(version: str, timeout: int) -> Iterator[dict[str, Any]]:
        yield from ({"type": e["type"], "object": e["object"]} for e in events)

    return PodReflector(lambda: ([], "1"), watch, timeout_s=300, retry_s=1.0)


def _handle_of(name: str) -> Handle:
    return Handle(runtime="kubernetes", target=f"{name}.spacehub-spaces.svc:7860", data={"name": name})


def test_recorded_watch_events_drive_the_stages(settings: Settings) -> None:
    reflector = _reflector([])
    runtime = KubernetesRuntime(settings, api=StubApi(), reflector=reflector)  # type: ignore[arg-type]
    seen = set()
    for event in EVENTS:
        reflector.apply({"type": event["type"], "object": event["object"]})
        handle = _handle_of(event["object"]["metadata"]["name"])
        expect = event["expect"]
        assert runtime.poll(handle) == expect["exit_code"], event["object"]["status"]
        state = runtime.state(handle)
        if expect["stage"] is None:
            assert state is None  # deleted: gone (the API answers 404 too)
            continue
        assert state is not None and state.stage == expect["stage"], (state, event["object"]["status"])
        assert expect["message_contains"] in state.message, state.message
        seen.add(state.stage)
    assert seen == {"APP_STARTING", "RUNNING", "RUNTIME_ERROR"}
    # Each kind of trouble was in the stream and read as such.
    messages = [podstatus.read(e["object"]).message for e in EVENTS]
    for words in ("OOMKilled", "ErrImagePull", "ImagePullBackOff", "waiting for a free GPU", "Evicted"):
        assert any(words in message for message in messages), words


def test_a_failed_pods_logs_end_with_why(settings: Settings) -> None:
    reflector = _reflector([])
    runtime = KubernetesRuntime(settings, api=StubApi(), reflector=reflector)  # type: ignore[arg-type]
    oom = next(e for e in EVENTS if "OOMKilled" in e["expect"]["message_contains"])
    reflector.apply(oom)
    lines = list(runtime.logs(_handle_of(oom["object"]["metadata"]["name"])))
    assert lines[:2] == ["app line 1", "app line 2"] and "OOMKilled" in lines[-1]


def test_the_reflector_follows_a_watch_and_relists_after_gone(settings: Settings) -> None:
    stream = [{"type": e["type"], "object": e["object"]} for e in EVENTS]
    listed = [EVENTS[0]["object"]]
    calls: list[str] = []

    def watch(version: str, timeout: int) -> Iterator[dict[str, Any]]:
        calls.append(version)
        yield from stream
        yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}

    reflector = PodReflector(lambda: (list(listed), "99"), watch, timeout_s=300, retry_s=1.0)
    with pytest.raises(Gone):
        reflector.run_once()
    assert calls == ["99"]  # watched from the list's version
    names = {pod["metadata"]["name"] for pod in reflector.pods()}
    assert "space-21-0f1e2d3c4b5a-a1b2c3" not in names  # its DELETED event came last
    assert names == {"space-22-0f1e2d3c4b5a-d4e5f6", "space-23-0f1e2d3c4b5a-0a0b0c", "space-24-0f1e2d3c4b5a-1d2e3f",
                     "space-25-0f1e2d3c4b5a-4a5b6c"}
    assert reflector.resource_version == "150"


def test_start_creates_the_manifests_and_stop_removes_them(settings: Settings) -> None:
    api = StubApi()
    runtime = KubernetesRuntime(settings, api=api, reflector=_reflector([]))  # type: ignore[arg-type]
    artifact = Artifact(kind="docker-image", key="k", ref=DIGEST)
    handle = runtime.start(spec(31, storage="small", env={"HF_TOKEN": "hf_secret-value"}), artifact)
    kinds = [kind for verb, kind, _ in api.calls if verb == "create"]
    assert kinds == ["Secret", "PersistentVolumeClaim", "Pod", "Service"]
    pod = next(body for verb, kind, body in api.calls if kind == "Pod")
    for _, _, body in api.calls:
        kubernetes_validate.validate(body, K8S_VERSIONS[-1], strict=True)
    assert "hf_secret-value" not in json.dumps(pod)
    assert pod["spec"]["containers"][0]["image"] == DIGEST
    assert handle.target == f"{pod['metadata']['name']}.spacehub-spaces.svc:7860"
    assert handle.data["space_id"] == 31 and handle.data["revision"] == REVISION
    assert Handle.from_json(json.loads(json.dumps(handle.to_json()))) == handle
    # A second start of the space keeps its claim (409 is "already there") and gets a pod name of its own.
    again = runtime.start(spec(31, storage="small"), artifact)
    assert again.data["name"] != handle.data["name"]
    api.calls.clear()
    runtime.stop(handle)
    assert sorted(kind for verb, kind, _ in api.calls) == ["Pod", "Secret", "Service"]
    assert ("PersistentVolumeClaim", "space-31-data") in api.existing  # storage outlives the pod
    runtime.stop(handle)  # idempotent: 404s are fine
    runtime.remove_volume(runtime.volume_name(31))
    assert ("PersistentVolumeClaim", "space-31-data") not in api.existing
    runtime.remove_volume(runtime.volume_name(31))


def test_a_refused_start_removes_what_it_made(settings: Settings) -> None:
    api = StubApi(fail={"Pod": 403})
    runtime = KubernetesRuntime(settings, api=api, reflector=_reflector([]))  # type: ignore[arg-type]
    with pytest.raises(StartFailed, match="refused the space's Pod"):
        runtime.start(spec(32), Artifact(kind="docker-image", key="k", ref=DIGEST))
    assert api.existing == {}  # the Secret made before the Pod was deleted again


def test_only_registry_images_and_schedulable_flavors_start(settings: Settings) -> None:
    runtime = KubernetesRuntime(settings, api=StubApi(), reflector=_reflector([]))  # type: ignore[arg-type]
    with pytest.raises(StartFailed, match="not in a registry"):
        runtime.start(spec(33), Artifact(kind="docker-image", key="k", ref="spacehub/app:k"))
    with pytest.raises(StartFailed, match="cannot be scheduled"):
        runtime.start(spec(33, hardware="h100"), Artifact(kind="docker-image", key="k", ref=DIGEST))


def test_it_is_wired_by_name_without_freeze(settings: Settings) -> None:
    kube = settings.model_copy(update={"runtime": "kubernetes"})
    assert backends.runtime_name(kube) == "kubernetes"
    plugged = WiredRuntime.of(backends.RUNTIMES["kubernetes"](kube))
    assert plugged.freezer is None  # Kubernetes has no pause: sleep deletes the pod, wake creates it
    assert plugged.managed is not None and plugged.storage is not None
    assert backends.builder_for(kube, "kubernetes").name == "docker"  # it pushes to SPACEHUB_REGISTRY


def test_the_cluster_not_the_platform_hands_out_gpus(settings: Settings) -> None:
    # No local device is allocated for a GPU space on Kubernetes: the pod's nvidia.com/gpu limit is the ask.
    assert gpus.gpus_needed(settings, "t4-small") == 1
    assert gpus.gpus_needed(settings.model_copy(update={"runtime": "kubernetes"}), "t4-small") == 0


def test_handles_rebuilt_from_pods_carry_the_labels(settings: Settings) -> None:
    pod = EVENTS[0]["object"]
    handle = _handle(pod)
    assert handle.data["space_id"] == 21 and handle.data["revision"] == REVISION
    assert pod["metadata"]["labels"][objects.INSTANCE] == INSTANCE
