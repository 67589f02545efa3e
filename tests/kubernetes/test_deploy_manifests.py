"""deploy/kubernetes/: every object valid for the supported Kubernetes versions, the spaces namespace's policy
and Role exactly what the code generates, and the platform's pods labelled as that policy admits them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubekit import K8S_VERSIONS

from spacehub.settings import Settings
from spacehub_runner.kube import manifests, objects

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def _docs(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def _all() -> list[dict[str, Any]]:
    return [doc for path in sorted(DEPLOY.glob("*.yaml")) for doc in _docs(path.name)]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_deploy_object_is_valid(version: str) -> None:
    docs = _all()
    assert len(docs) >= 12
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_spaces_namespace_file_is_what_the_code_generates(tmp_path: Path) -> None:
    expected = manifests.render_namespace(Settings(data_dir=tmp_path))
    assert (DEPLOY / "spaces-namespace.yaml").read_text() == expected, (
        "regenerate: python -m spacehub_runner.kube.manifests > deploy/kubernetes/spaces-namespace.yaml")


def test_the_builds_namespace_file_is_what_the_code_generates(tmp_path: Path) -> None:
    expected = manifests.render_builds_namespace(Settings(data_dir=tmp_path))
    assert (DEPLOY / "builds-namespace.yaml").read_text() == expected, (
        "regenerate: python -m spacehub_runner.kube.manifests builds > deploy/kubernetes/builds-namespace.yaml")
    # Build pods fetch their context from the workers at their pod IP, on the ports the builds policy opens.
    worker = next(doc for doc in _docs("platform.yaml") if doc["metadata"]["name"] == "spacehub-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert {"name": "SPACEHUB_KUBE_BUILD_CONTEXT_HOST",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]


def test_the_platform_pods_are_those_the_policy_admits() -> None:
    platform = _docs("platform.yaml")
    deployments = {doc["metadata"]["name"]: doc for doc in platform if doc["kind"] == "Deployment"}
    components = {d["spec"]["template"]["metadata"]["labels"][objects.PLATFORM_COMPONENT]: d
                  for d in deployments.values()}
    assert set(objects.CALLERS) <= set(components)
    for name in objects.CALLERS:
        assert components[name]["spec"]["template"]["metadata"]["labels"][objects.PLATFORM_NAME] == objects.PLATFORM
    # The runtime's rights go to the worker and the supervisor only.
    (binding,) = [doc for doc in _docs("spaces-namespace.yaml") if doc["kind"] == "RoleBinding"]
    account = binding["subjects"][0]["name"]
    runs_as = {c: d["spec"]["template"]["spec"].get("serviceAccountName") for c, d in components.items()}
    assert {c for c, sa in runs_as.items() if sa == account} == {"worker", "supervisor"}
    assert all(d["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
               for c, d in components.items() if runs_as[c] is None)
    # The proxy listens on the port the policy lets spaces reach (their HF_ENDPOINT).
    (proxy,) = components["proxy"]["spec"]["template"]["spec"]["containers"]
    proxy_ports = {port["containerPort"] for port in proxy["ports"]}
    assert Settings.model_fields["port"].default in proxy_ports


def test_the_spaces_namespace_enforces_the_restricted_standard() -> None:
    spaces = next(doc for doc in _docs("namespaces.yaml") if doc["metadata"]["name"] == "spacehub-spaces")
    assert spaces["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
