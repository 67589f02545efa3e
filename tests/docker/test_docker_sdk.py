"""`sdk: docker` spaces: the space's own Dockerfile, variables as build args, secrets as BuildKit secrets."""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.request
from pathlib import Path

import pytest
from dockerkit import Log, docker, run_spec, write_tree

from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.plugs import BuildInputs, BuildPlan
from spacehub_runner.runtimes.docker import DockerRuntime

pytestmark = pytest.mark.docker


def test_build_secret_is_usable_but_never_stored(
    builder: DockerBuilder, runtime: DockerRuntime, base_image: str, tmp_path: Path
) -> None:
    token = "hf_" + secrets.token_hex(16)
    dockerfile = f"""\
FROM {base_image}
ARG GREETING
# Secret values are not part of BuildKit's cache key: a fresh step, so this run's secret is the one used.
RUN echo {secrets.token_hex(4)}
RUN --mount=type=secret,id=API_TOKEN,mode=0444,required=true \\
    sha256sum /run/secrets/API_TOKEN | cut -d' ' -f1 > /secret.sha256 && echo "$GREETING" > /greeting
# A careless step that prints the secret: the platform masks it in the log it keeps.
RUN --mount=type=secret,id=API_TOKEN echo "token is $(cat /run/secrets/API_TOKEN)"
USER 1000
WORKDIR /tmp
CMD ["python3", "-m", "http.server", "7860"]
"""
    tree = write_tree(tmp_path, {"Dockerfile": dockerfile})
    log = Log()
    artifact = builder.build(
        BuildPlan(recipe="docker"),
        tree,
        log,
        BuildInputs(variables={"GREETING": "hi there"}, secrets={"API_TOKEN": token}),
    )
    first_id = docker("image", "inspect", "--format", "{{.Id}}", artifact.ref).stdout.strip()
    try:
        # Readable in the RUN step (its hash landed in the image), and the variable arrived as a build arg.
        digest = docker("run", "--rm", artifact.ref, "cat", "/secret.sha256").stdout.strip()
        assert digest == hashlib.sha256(token.encode()).hexdigest()
        assert docker("run", "--rm", artifact.ref, "cat", "/greeting").stdout.strip() == "hi there"
        # ...and nowhere else: not in history, not in the image config, not in the log.
        history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", artifact.ref).stdout
        config = docker("image", "inspect", artifact.ref).stdout
        assert token not in history
        assert token not in config
        assert token not in log.text
        assert "token is *****" in log.text
        assert not docker("run", "--rm", artifact.ref, "ls", "/run/secrets", check=False).stdout.strip()

        # A new secret value changes neither the tag nor BuildKit's cache keys: a factory rebuild uses it.
        rotated = "hf_" + secrets.token_hex(16)
        rebuilt = builder.build(
            BuildPlan(recipe="docker"),
            tree,
            Log(),
            BuildInputs(variables={"GREETING": "hi there"}, secrets={"API_TOKEN": rotated}, no_cache=True),
        )
        digest = docker("run", "--rm", rebuilt.ref, "cat", "/secret.sha256").stdout.strip()
        assert digest == hashlib.sha256(rotated.encode()).hexdigest()

        # The space runs from its own image, as uid 1000 whatever its Dockerfile says.
        handle = runtime.start(run_spec(990_010, BuildPlan(recipe="docker")), artifact)
        try:
            runtime.wait_ready(handle, timeout=30)
            with urllib.request.urlopen(f"http://{handle.target}/", timeout=10) as response:
                assert response.status == 200
            info = json.loads(docker("inspect", handle.data["container_id"]).stdout)[0]
            assert info["Config"]["User"] == "1000:1000"
            assert not any(token in item for item in info["Config"]["Env"])
        finally:
            runtime.stop(handle)
    finally:
        docker("rmi", artifact.ref, check=False)
        docker("rmi", first_id, check=False)  # untagged by the factory rebuild


def test_build_args_of_a_gradio_space_are_ignored(builder: DockerBuilder, hello) -> None:
    # Variables and secrets reach gradio spaces at run time only: passing them must not change the image.
    again = builder.build(hello.plan, hello.tree, Log(), BuildInputs(variables={"X": "1"}, secrets={"S": "secret"}))
    assert again.ref == hello.artifact.ref
