"""The `similarity` example on the Docker runtime: a real `spacehub serve` with SPACEHUB_RUNTIME=docker whose
package source is the folder holding the torch CPU wheel (served to the build over HTTP, design §6), and the model
imported into spacehub, which the container loads through HF_ENDPOINT (host.docker.internal).

The same gradio_client checks as on the process runtime (tests/integration/test_ml_examples.py), plus what only
the image shows: torch is the CPU build from the configured source, with none of the CUDA wheels a download
from PyPI would have brought.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerkit import docker, inspect_existing, instance_containers, record, remove_instance
from integration.test_ml_examples import (  # noqa: F401 - the process runtime's tests and fixtures, on docker
    model,
    similarity,
    test_similarity_embeddings_match_the_wheels_model,
    test_similarity_ranks_a_paraphrase_above_an_unrelated_sentence,
)

from support.server import EXAMPLES, Server

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sdk_image: str) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("ml-docker") / "data"
    srv = Server(data_dir, runtime="docker", pip_find_links="/opt/wheels")
    srv.start()
    yield srv
    srv.stop()
    remove_instance(data_dir)


@pytest.fixture(scope="module")
def container(server: Server, similarity: object) -> str:  # noqa: F811 - the imported fixture
    found = inspect_existing(instance_containers(server.data_dir, all_states=False))
    (running,) = [c for c in found if c["Config"]["Labels"].get("spacehub.space-key") == "admin/similarity"]
    return str(running["Id"])


def test_build_took_torch_from_the_configured_source_not_a_cuda_download(container: str) -> None:
    probe = ("import importlib.metadata as md, json, torch; print(json.dumps({'torch': torch.__version__, "
             "'cuda': torch.version.cuda, 'nvidia': sorted(d.metadata['Name'] for d in md.distributions() "
             "if d.metadata['Name'].lower().startswith('nvidia'))}))")
    seen = json.loads(docker("exec", container, "python", "-c", probe).stdout)
    assert seen == {"torch": "2.13.0+cpu", "cuda": None, "nvidia": []}


def test_the_container_loads_its_model_from_spacehub(server: Server, container: str) -> None:
    env = dict(item.split("=", 1) for item in json.loads(docker("inspect", container).stdout)[0]["Config"]["Env"])
    assert env["HF_ENDPOINT"] == f"http://host.docker.internal:{server.port}"
    page = server.space_get("admin-similarity")
    assert f"loaded from `{env['HF_ENDPOINT']}`" in page.text


@pytest.mark.usefixtures("similarity")
def test_a_rebuild_of_the_same_requirements_is_cached(server: Server, tmp_path: Path) -> None:
    changed = tmp_path / "similarity"
    changed.mkdir()
    for item in (EXAMPLES / "similarity").iterdir():
        changed.joinpath(item.name).write_bytes(item.read_bytes())
    readme = changed / "README.md"
    # A fresh change each run: images are named by content, so a repeated change would build nothing at all.
    readme.write_text(readme.read_text() + f"\nA code-only change ({secrets.token_hex(4)}).\n")
    started = time.monotonic()
    result = server.cli("push", str(changed), "admin/similarity", timeout=1200)
    record("similarity: push-to-RUNNING, README-only change", time.monotonic() - started)
    assert "Running: " in result.stdout
    # The requirements layer (torch, transformers) comes from BuildKit's cache; only the app code is copied again.
    lines = result.stdout.splitlines()
    (install,) = [line.split()[0] for line in lines if "RUN " in line and "spacehub-pkgsrc" in line]
    assert f"{install} CACHED" in lines
    assert any("COPY" in line and "app/" in line for line in lines)
