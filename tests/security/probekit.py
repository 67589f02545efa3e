"""Helpers of the sandbox tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.plugs import Artifact, BuildPlan

DOCKER = "/usr/bin/docker"
PROBE = Path(__file__).parent / "probe" / "probe.py"
SPACE_IDS = range(991_000, 991_100)  # space ids of this suite's containers


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


def build_probe(builder: DockerBuilder, base_image: str, folder: Path, targets: list[str] = (),
                steps: str = "") -> Artifact:
    """The probe as a `sdk: docker` space; its build step probes `targets` into /probe-build.json."""
    nonce = secrets.token_hex(4)  # a fresh step every time: never an answer from BuildKit's cache
    (folder / "probe.py").write_text(PROBE.read_text())
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\n"
        "COPY probe.py /probe.py\n"
        f"RUN echo {nonce} && python3 /probe.py --connect {' '.join(targets)} > /probe-build.json\n"
        f"{steps}"
        "EXPOSE 7860\n"
        'CMD ["python3", "/probe.py", "--serve", "7860"]\n'
    )
    lines: list[str] = []
    try:
        return builder.build(BuildPlan(recipe="docker"), folder, lines.append)
    except Exception as exc:
        raise AssertionError("probe build failed:\n" + "\n".join(lines[-40:])) from exc


def build_report(artifact: Artifact) -> dict[str, dict[str, str]]:
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "cat", artifact.ref, "/probe-build.json")
    return dict(json.loads(out.stdout))
