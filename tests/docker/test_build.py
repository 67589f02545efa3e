"""DockerBuilder against a real dockerd: layering, content-named tags, package sources, timeouts."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

import pytest
from dockerkit import HELLO_APP, Built, Log, docker, hello_plan, record, write_tree

from spacehub.errors import BuildFailed
from spacehub.settings import Settings
from spacehub_runner import pkgsources
from spacehub_runner.builders.docker import DockerBuilder, gradio_dockerfile
from spacehub_runner.plugs import BuildPlan

pytestmark = pytest.mark.docker


def _inspect(ref: str) -> dict:
    return json.loads(docker("image", "inspect", ref).stdout)[0]


def test_first_build_makes_a_locked_down_app_image(hello: Built) -> None:
    art = hello.artifact
    assert art.kind == "docker-image" and art.ref == f"spacehub/app:{art.key}"
    assert art.extra["runtime"] == "docker"
    config = _inspect(art.ref)["Config"]
    assert config["User"] == "1000"
    assert config["WorkingDir"] == "/home/user/app"
    assert config["Cmd"] == ["python", "app.py"]
    assert config["Labels"]["spacehub.key"] == art.key
    # The build log was streamed line by line (BuildKit plain progress), apt and uv steps included.
    assert any("apt-get install" in line for line in hello.log.lines)
    assert any("uv pip install" in line for line in hello.log.lines)


def test_requirement_from_a_local_find_links_folder_is_installed(hello: Built) -> None:
    # The folder exists only on the host: the build reached it through the per-build file server.
    code = "import spacehub_hello_dep as m; print(m.GREETING)"
    result = docker("run", "--rm", hello.artifact.ref, "python", "-c", code)
    assert result.stdout.strip() == "hello from a local wheel"
    # ...and the server's address (a random port) is in no layer or history entry, so layers stay cacheable.
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", hello.artifact.ref).stdout
    assert "UV_FIND_LINKS" not in history and "172.17.0.1" not in history


def test_apt_packages_are_installed(hello: Built) -> None:
    result = docker("run", "--rm", hello.artifact.ref, "sh", "-c", "command -v nc")
    assert result.stdout.strip()


def test_unchanged_tree_and_plan_build_nothing(builder: DockerBuilder, hello: Built) -> None:
    log = Log()
    t0 = time.monotonic()
    again = builder.build(hello.plan, hello.tree, log)
    record("hello build, unchanged", time.monotonic() - t0)
    assert again == hello.artifact
    assert any("nothing to build" in line for line in log.lines)
    assert not any(line.startswith("#") for line in log.lines), "docker build must not even run"


def test_code_only_change_rebuilds_only_the_last_layer(builder: DockerBuilder, hello: Built, tmp_path: Path) -> None:
    tree = tmp_path / "changed"
    shutil.copytree(hello.tree, tree)
    (tree / "app.py").write_text(HELLO_APP.replace("!", "!!"))
    log = Log()
    t0 = time.monotonic()
    changed = builder.build(hello.plan, tree, log)
    record("hello build, code-only change", time.monotonic() - t0)
    assert changed.ref != hello.artifact.ref

    old_layers = _inspect(hello.artifact.ref)["RootFS"]["Layers"]
    new_layers = _inspect(changed.ref)["RootFS"]["Layers"]
    assert len(new_layers) == len(old_layers)
    assert new_layers[:-1] == old_layers[:-1], "every layer but the app code must be reused"
    assert new_layers[-1] != old_layers[-1]
    # The log agrees: every RUN step was CACHED, and the requirements were not installed again.
    assert sum(1 for line in log.lines if line.endswith(" CACHED")) >= 3
    assert not any("Installed" in line for line in log.lines)
    docker("rmi", changed.ref)


def test_dockerfile_is_generated_from_the_plan_only() -> None:
    text = gradio_dockerfile(hello_plan(requirements=("numpy==2.0; python_version>'3'",)), "spacehub/sdk:x")
    assert "numpy" not in text  # requirement text travels as a file in the context, never in the Dockerfile
    assert text.rstrip().endswith("COPY --chown=1000:1000 app/ /home/user/app/")
    with pytest.raises(BuildFailed):
        gradio_dockerfile(hello_plan(apt_packages=("curl\nRUN rm -rf /",)), "spacehub/sdk:x")
    with pytest.raises(BuildFailed):
        gradio_dockerfile(hello_plan(app_file='app.py"]\nRUN id #.py'), "spacehub/sdk:x")


def test_build_timeout_fails_the_build(settings: Settings, base_image: str, tmp_path: Path) -> None:
    quick = settings.model_copy(update={"build_timeout_s": 3})
    tree = write_tree(tmp_path, {"Dockerfile": f"FROM {base_image}\nRUN sleep 60\n"})
    t0 = time.monotonic()
    with pytest.raises(BuildFailed, match="timed out"):
        DockerBuilder(quick).build(hello_plan(recipe="docker"), tree, Log())
    assert time.monotonic() - t0 < 30


def test_static_spaces_need_no_image(builder: DockerBuilder, tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "site", {"index.html": "<h1>hi</h1>"})
    artifact = builder.build(BuildPlan(recipe="static", app_file="index.html"), tree, Log())
    assert artifact.kind == "static"
    assert (Path(artifact.ref) / "index.html").read_text() == "<h1>hi</h1>"
    assert builder.artifact_exists(artifact)


def test_local_sources_are_served_read_only_and_narrowly(tmp_path: Path) -> None:
    simple = write_tree(tmp_path / "mirror" / "simple" / "demo", {"index.html": '<a href="../../files/d.whl">d</a>'})
    write_tree(tmp_path / "mirror" / "files", {"d.whl": "wheel", "notes.txt": "private"})
    wheels = write_tree(tmp_path / "wheels", {"a-1.0-py3-none-any.whl": "a", "secret.env": "TOKEN=x"})
    with pkgsources.serve_sources(None, [f"file://{simple.parent}"], [str(wheels)], "127.0.0.1") as sources:
        index = sources.extra_index_urls[0]
        links = sources.find_links[0]
        assert index.startswith("http://127.0.0.1:") and index.endswith("/simple/")

        def get(url: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                return exc.code, b""

        assert get(index + "demo/") == (200, b'<a href="../../files/d.whl">d</a>')
        assert get(urljoin(index + "demo/", "../../files/d.whl")) == (200, b"wheel")
        assert get(urljoin(index, "../files/notes.txt"))[0] == 404  # only package files
        listing = get(links)[1].decode()
        assert "a-1.0-py3-none-any.whl" in listing and "secret.env" not in listing
        assert get(links + "secret.env")[0] == 404
        assert get(links + "../mirror/files/d.whl")[0] == 404
        assert get(links.split("/tmp")[0] + "/etc/passwd")[0] == 404
        script = sources.env_script()
        assert "UV_INDEX=" in script and "UV_FIND_LINKS=" in script
