"""Docker-specific knobs for the images, the docker builder and the docker runtime, read from `Settings`.

Each knob is the setting `SPACEHUB_DOCKER_<NAME>` (`Settings.docker_<name>`, documented in the README); the
defaults here match the settings' and apply to any settings object that lacks a field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from spacehub.settings import Settings

DEFAULT_PYTHON = "3.11"


@dataclass(frozen=True)
class DockerOptions:
    # Images
    # `{python}` becomes e.g. "3.11"; a real deployment would say python:{python}-slim
    base_image: str = "spacehub/base:py{python}"
    sdk_repo: str = "spacehub/sdk"  # SDK images: <sdk_repo>:py3.11-gradio6.31.0
    app_repo: str = "spacehub/app"  # space images: <app_repo>:<content hash>
    cli: str = "/usr/bin/docker"  # Debian's 20.10 client: BuildKit without the buildx plugin
    debian_suite: str = "bookworm"  # offline base bootstrap (debootstrap)
    debian_mirror: str = "http://deb.debian.org/debian"
    debian_security_mirror: str = "http://deb.debian.org/debian-security"
    uv_index_strategy: str = "unsafe-best-match"  # pip's semantics across index + extra indexes
    # Running
    network: str = "spacehub"  # spacehub's own bridge, policed by `spacehub sandbox install` (spacehub.sandbox)
    package_ports: str = "28300-28399"  # the build-time package server binds one of these (egress allows them)
    build_disk_gb: float = 50.0  # a build is stopped once Docker's disk lost this much since it began
    build_disk_check_s: float = 1.0
    cpu_scale: float = 0.5  # Hub flavor vCPUs x this (cpu-basic: 2 -> 1 cpu)
    memory_scale: float = 0.125  # Hub flavor memory x this (cpu-basic: 16 GB -> 2 GB)
    pids_limit: int = 512
    log_max_size: str = "10m"
    log_max_file: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerOptions:
        values = {}
        for f in fields(cls):
            value = getattr(settings, f"docker_{f.name}", None)
            if value is not None:
                values[f.name] = value
        return cls(**values)

    def base_image_for(self, python_version: str) -> str:
        return self.base_image.replace("{python}", python_version)


def images_dir(settings: Settings) -> Path:
    """Where image bootstrap caches live (the debootstrap rootfs tarball, build contexts)."""
    return settings.data_dir / "images"
