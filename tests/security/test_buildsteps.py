"""Build steps (BuildKit `RUN`, the space's own Dockerfile and the platform's layers alike) run with
no-new-privileges and only the capabilities `SPACEHUB_DOCKER_BUILD_CAPS` names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from probekit import build_probe, build_report

from spacehub.sandbox import buildsteps
from spacehub.settings import Settings
from spacehub_runner.builders.docker import DockerBuilder

pytestmark = pytest.mark.docker

# Linux capability numbers (include/uapi/linux/capability.h) of what a build step may keep.
CAP_NUMBERS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
               "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
               "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31}


def test_a_build_step_has_no_new_privileges_and_few_capabilities(builder: DockerBuilder, base_image: str,
                                                                  tmp_path: Path, settings: Settings) -> None:
    assert buildsteps.problems(settings) == []
    # A step as root that also tries what the dropped capabilities allow: a raw socket (NET_RAW), a device
    # node (MKNOD); and apt's own privilege drop (SETUID/SETGID kept) with a setuid binary's file mode.
    steps = (
        "RUN python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)' "
        "2>/dev/null && echo raw-socket > /raw || echo refused > /raw\n"
        "RUN mknod /tmp/node c 1 3 2>/dev/null && echo made > /mknod || echo refused > /mknod\n"
        "RUN setpriv --reuid=1000 --regid=1000 --clear-groups id -u > /dropped\n"
    )
    artifact = build_probe(builder, base_image, tmp_path, steps=steps)
    try:
        status = build_report(artifact)["status"]
        outputs = {name: subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "cat",
                                         artifact.ref, f"/{name}"], capture_output=True, text=True).stdout.strip()
                   for name in ("raw", "mknod", "dropped")}
    finally:
        subprocess.run(["docker", "rmi", artifact.ref], capture_output=True)
    wanted = sum(1 << CAP_NUMBERS[c] for c in buildsteps.capabilities(settings))
    assert status["NoNewPrivs"] == "1"
    for kind in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[kind], 16) == wanted, (kind, status)
    assert int(status["CapAmb"], 16) == 0
    assert outputs == {"raw": "refused", "mknod": "refused", "dropped": "1000"}


def test_other_containers_are_untouched_by_the_wrapper(base_image: str) -> None:
    """The wrapper hardens build steps only: a container's capabilities stay what Docker was asked for."""
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--cap-drop", "ALL", "--cap-add", "NET_RAW",
                          base_image, "grep", "CapEff", "/proc/self/status"], capture_output=True, text=True)
    assert int(out.stdout.split()[1], 16) == 1 << CAP_NUMBERS["CAP_NET_RAW"], out.stderr
