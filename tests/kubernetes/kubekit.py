"""Shared inputs of the Kubernetes tests: fixed settings and run specs, so the generated objects are stable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from spacehub.settings import Settings
from spacehub_runner.plugs import BuildPlan, RunSpec

GOLDEN = Path(__file__).parent / "golden"
INSTANCE = "0123456789ab"
IMAGE = "registry.example.com/spacehub/app@sha256:" + "ab" * 32
REVISION = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
# Oldest and newest Kubernetes versions whose schemas every generated object is checked against.
K8S_VERSIONS = ("1.28.0", "1.37.0")


def kube_settings(tmp: Path) -> Settings:
    flavors = tmp / "kube-flavors.yaml"
    flavors.write_text("t4-small: {schedulable: true}\n")
    return Settings(data_dir=tmp / "data", kube_flavors=flavors, kube_storage_class="fast-ssd",
                    kube_pull_secret="spacehub-registry", public_url="https://hub.example.com")


def spec(space_id: int, **overrides: Any) -> RunSpec:
    fields: dict[str, Any] = {
        "space_id": space_id,
        "space_key": f"alice/space-{space_id}",
        "revision": REVISION,
        "plan": BuildPlan(recipe="gradio"),
        "env": {"SPACE_ID": f"alice/space-{space_id}", "SPACE_AUTHOR_NAME": "alice",
                "SPACE_REPO_NAME": f"space-{space_id}", "HF_ENDPOINT": "https://hub.example.com", "SYSTEM": "spaces"},
    }
    fields.update(overrides)
    return RunSpec(**fields)


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=True, default_flow_style=False)
