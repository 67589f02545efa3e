"""From the platform's settings and a RunSpec to the objects of `objects` (still pure: no client, no cluster)."""

from __future__ import annotations

from typing import Any

import yaml

from spacehub import hardware
from spacehub.errors import StartFailed
from spacehub.kubeplacement import placement
from spacehub.settings import Settings

from ..pkgsources import port_range
from ..plugs import RunSpec
from . import buildobjects, objects

RUNTIME_SERVICE_ACCOUNT = "spacehub-runtime"


def fixed_env(port: int) -> dict[str, str]:
    """The platform's own env values: bind and port are not the app's to choose."""
    return {
        "GRADIO_NUM_PORTS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
        "GRADIO_SERVER_NAME": "0.0.0.0",
        "GRADIO_SERVER_PORT": str(port),
        "PORT": str(port),
    }


def space_pod(settings: Settings, spec: RunSpec, image: str, instance: str, suffix: str = "") -> objects.SpacePod:
    """The SpacePod of one revision; StartFailed when the cluster cannot schedule its flavor."""
    flavor_name = spec.hardware or hardware.DEFAULT_FLAVOR
    place = placement(settings, flavor_name)
    if not place.schedulable:
        raise StartFailed(f"hardware {flavor_name!r} cannot be scheduled on this cluster (SPACEHUB_KUBE_FLAVORS "
                          "lists the flavors it can run)")
    port = int(spec.plan.app_port or 7860)
    return objects.SpacePod(
        namespace=settings.kube_namespace,
        instance=instance,
        space_id=spec.space_id,
        space_key=spec.space_key,
        revision=spec.revision,
        image=image,
        app_port=port,
        flavor=hardware.flavor(settings, flavor_name),
        placement=place,
        storage_claim=objects.claim_name(spec.space_id) if spec.storage else None,
        pull_secret=settings.kube_pull_secret,
        fixed_env=fixed_env(port),
        suffix=suffix,
    )


def space_manifests(settings: Settings, spec: RunSpec, image: str, instance: str,
                    suffix: str = "") -> list[dict[str, Any]]:
    """Everything one running revision needs, in the order it is created: Secret, PVC (if any), Pod, Service."""
    pod_spec = space_pod(settings, spec, image, instance, suffix)
    made = [objects.env_secret(pod_spec, spec.env)]
    if spec.storage:
        made.append(objects.claim(settings.kube_namespace, instance, spec.space_id,
                                  settings.storage_gb(spec.storage), settings.kube_storage_class))
    made += [objects.pod(pod_spec), objects.service(pod_spec)]
    return made


def namespace_manifests(settings: Settings) -> list[dict[str, Any]]:
    """What the spaces namespace holds once, installed by the operator (deploy/kubernetes/): its NetworkPolicy
    and the runtime's Role and RoleBinding."""
    return [
        objects.network_policy(settings.kube_namespace, settings.kube_platform_namespace, settings.port,
                               settings.kube_egress_internet),
        objects.runtime_role(settings.kube_namespace),
        objects.runtime_role_binding(settings.kube_namespace, RUNTIME_SERVICE_ACCOUNT,
                                     settings.kube_platform_namespace),
    ]


def builds_namespace_manifests(settings: Settings) -> list[dict[str, Any]]:
    """What the builds namespace (SPACEHUB_BUILDER=kubernetes) holds once: its NetworkPolicy and the builder's Role
    and RoleBinding (the worker's service account)."""
    ports = port_range(settings.kube_build_context_ports)
    registry_host = (settings.registry or "").split("/", 1)[0]
    _, _, port = registry_host.rpartition(":")
    return [
        buildobjects.network_policy(settings.kube_build_namespace, settings.kube_platform_namespace,
                                    (ports.start, ports.stop - 1), int(port) if port.isdigit() else 443),
        buildobjects.builder_role(settings.kube_build_namespace),
        buildobjects.builder_role_binding(settings.kube_build_namespace, RUNTIME_SERVICE_ACCOUNT,
                                          settings.kube_platform_namespace),
    ]


def render_builds_namespace(settings: Settings) -> str:
    header = ("# The builds namespace's NetworkPolicy and the builder's Role (SPACEHUB_BUILDER=kubernetes):\n"
              "#   python -m spacehub_runner.kube.manifests builds > deploy/kubernetes/builds-namespace.yaml\n"
              "# (a test holds this file to the defaults' output).\n")
    return header + yaml.safe_dump_all(builds_namespace_manifests(settings), sort_keys=True,
                                       default_flow_style=False)


def render_namespace(settings: Settings) -> str:
    """deploy/kubernetes/spaces-namespace.yaml for these settings (`python -m spacehub_runner.kube.manifests`)."""
    header = ("# The spaces namespace's NetworkPolicy and the runtime's Role, generated from the settings in force:\n"
              "#   python -m spacehub_runner.kube.manifests > deploy/kubernetes/spaces-namespace.yaml\n"
              "# (a test holds this file to the defaults' output).\n")
    return header + yaml.safe_dump_all(namespace_manifests(settings), sort_keys=True, default_flow_style=False)


if __name__ == "__main__":
    import sys

    from spacehub.settings import load_settings

    render = render_builds_namespace if sys.argv[1:] == ["builds"] else render_namespace
    print(render(load_settings()), end="")
