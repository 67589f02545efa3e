"""A hostile README is refused with CONFIG_ERROR naming the rule, and no listing ever carries a big card.

A real `spacehub serve`; the README goes in as any user's would: the upload API, the real `huggingface_hub`
client (the Hub's commit API) and the real git CLI. The front matter is checked when the commit is made, not by
a build job: the upload's answer is the 4xx naming the rule, nothing is committed, and a space with no app shows
CONFIG_ERROR in the same moment; a push is refused in git's own output and moves no branch.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from support.server import Server

pytestmark = pytest.mark.timeout(600)

APP = b"import gradio as gr\ngr.Interface(lambda x: x, 'text', 'text').launch()\n"
# Nine levels of nine aliases: 350 bytes of YAML, 9**9 strings once expanded.
BILLION_LAUGHS = ("---\nsdk: gradio\n" + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))
                  + "---\n# laughs\n").encode()
TEN_MB = b"---\nsdk: gradio\ntitle: big\ndescription: " + b"y" * (10 * 1024 * 1024) + b"\n---\n# big\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("frontmatter") / "data")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


def _create(server: Server, name: str) -> None:
    created = server.api.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "gradio"})
    assert created.status_code == 200, created.text


def _upload(server: Server, name: str, readme: bytes):
    files = [("files", ("README.md", readme)), ("files", ("app.py", APP))]
    return server.api.post(f"/api/spaces/admin/{name}/upload", files=files)


def _runtime(server: Server, name: str) -> dict:
    answer = server.api.get(f"/api/spaces/admin/{name}/runtime")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _refused_upload(server: Server, name: str, readme: bytes, rule: str) -> None:
    _create(server, name)
    uploaded = _upload(server, name, readme)
    assert uploaded.status_code == 422, uploaded.text
    assert uploaded.headers["x-error-code"] == "ConfigError"
    assert rule in uploaded.json()["error"]


@pytest.mark.parametrize(("name", "readme", "rule"), [
    ("laughs", BILLION_LAUGHS, "YAML aliases (*a) are not allowed"),
    ("tenmb", TEN_MB, "front matter is larger than 64 KB"),
])
def test_hostile_upload_is_refused_naming_the_rule(server, name, readme, rule):
    _refused_upload(server, name, readme, rule)
    # Read once, not waited for: the refusal set the stage before the upload answered, with no build job.
    runtime = _runtime(server, name)
    assert runtime["stage"] == "CONFIG_ERROR"
    assert rule in str(runtime["errorMessage"])
    info = server.api.get(f"/api/spaces/admin/{name}").json()
    assert info["cardData"] == {}
    assert info["sha"] is None  # nothing was committed
    tree = server.api.get(f"/api/spaces/admin/{name}/tree/main")
    assert tree.status_code == 200 and tree.json() == [], tree.text


def test_a_good_upload_after_a_refusal_lands_and_builds(server):
    _refused_upload(server, "mended", BILLION_LAUGHS, "YAML aliases")
    files = [("files", ("README.md", b"---\nsdk: static\ntitle: mended\n---\n")),
             ("files", ("index.html", b"<p>mended</p>"))]
    uploaded = server.api.post("/api/spaces/admin/mended/upload", files=files)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["build_id"] is not None
    runtime = server.wait_stage("admin/mended", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR"})
    assert runtime["stage"] == "RUNNING"


def test_hub_commit_api_is_refused_naming_the_rule(server):
    _create(server, "viahub")
    # The real client checks a README with the server (validate-yaml) before it commits, and says why.
    api = HfApi(endpoint=server.url, token=server.token)
    with pytest.raises(ValueError, match=re.escape("YAML aliases (*a) are not allowed")):
        api.upload_file(path_or_fileobj=BILLION_LAUGHS, path_in_repo="README.md", repo_id="admin/viahub",
                        repo_type="space")
    # A caller that skips that check meets the same rule at the commit endpoint itself.
    lines = [{"key": "header", "value": {"summary": "laughs"}},
             {"key": "file", "value": {"path": "README.md", "encoding": "base64",
                                       "content": base64.b64encode(BILLION_LAUGHS).decode()}}]
    committed = server.api.post("/api/spaces/admin/viahub/commit/main",
                                headers={"Content-Type": "application/x-ndjson"},
                                content="\n".join(json.dumps(line) for line in lines))
    assert committed.status_code == 422, committed.text
    assert "YAML aliases (*a) are not allowed" in committed.json()["error"]
    assert _runtime(server, "viahub")["stage"] == "CONFIG_ERROR"
    assert server.api.get("/api/spaces/admin/viahub").json()["sha"] is None


def _git(home: Path, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
           "LC_ALL": "C"}
    done = subprocess.run(["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.com",
                           "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def test_git_push_of_a_hostile_readme_is_refused_in_gits_output(server, tmp_path):
    _create(server, "viagit")
    work = tmp_path / "viagit"
    _git(tmp_path, "clone", f"http://user:{server.token}@localhost:{server.port}/spaces/admin/viagit.git",
         str(work))
    (work / "README.md").write_bytes(BILLION_LAUGHS)
    (work / "app.py").write_bytes(APP)
    _git(tmp_path, "add", ".", cwd=work)
    _git(tmp_path, "commit", "-m", "laughs", cwd=work)
    pushed = _git(tmp_path, "push", "origin", "main", cwd=work, check=False)
    assert pushed.returncode != 0
    assert "remote: spacehub: push refused: README.md front matter: YAML aliases (*a) are not allowed" \
        in pushed.stderr
    assert server.api.get("/api/spaces/admin/viagit").json()["sha"] is None  # main did not move
    # The same push with the README written out lands.
    (work / "README.md").write_bytes(b"---\nsdk: gradio\ntitle: plain\n---\n# plain\n")
    _git(tmp_path, "commit", "-am", "plain", cwd=work)
    _git(tmp_path, "push", "origin", "main", cwd=work)
    assert server.api.get("/api/spaces/admin/viagit").json()["sha"] is not None


def test_listings_and_pages_stay_small(server):
    for name, readme in (("laughs", BILLION_LAUGHS), ("tenmb", TEN_MB)):
        if server.api.get(f"/api/spaces/admin/{name}").status_code == 404:
            _refused_upload(server, name, readme, "README.md front matter")
    listing = server.api.get("/api/spaces", params={"full": "true"})
    assert listing.status_code == 200
    assert {"admin/laughs", "admin/tenmb"} <= {row["id"] for row in listing.json()}
    assert len(listing.content) < 16 * 1024
    browser = {"Accept": "text/html"}
    for path in ("/spaces", "/spaces/admin/laughs", "/spaces/admin/tenmb"):
        page = server.api.get(path, headers=browser)
        assert page.status_code == 200, path
        assert len(page.content) < 256 * 1024, path


def test_validate_yaml_names_the_rule(server):
    answer = server.api.post("/api/validate-yaml", json={"repoType": "space", "content": BILLION_LAUGHS.decode()})
    assert answer.status_code == 400
    assert "YAML aliases" in answer.json()["errors"][0]["message"]
