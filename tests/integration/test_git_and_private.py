"""git over smart HTTP, private spaces at the proxy, and gradio_client by name: against a real `spacehub serve`.

The real git CLI clones and pushes; hostile pushes are refused and leave main where it was; a private space is,
to everyone but its owner's namespace, exactly a missing one (from its subdomain, the API and git); its owner
calls it with gradio_client and a token the app never sees; `Client("owner/name")` resolves through the Hub API
with HF_ENDPOINT (read at import time by huggingface_hub, so the client runs in a subprocess).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from support.server import EXAMPLES, Server

pytestmark = pytest.mark.timeout(900)

MAX_FILE_BYTES = 200_000

ECHO_README = """---
title: Echo
sdk: gradio
app_file: app.py
---
"""
# Answers with the request headers the app received: the platform's credentials must not be among them.
ECHO_APP = """import json

import gradio as gr


def echo(request: gr.Request) -> str:
    return json.dumps(dict(request.headers))


with gr.Blocks() as demo:
    out = gr.Textbox()
    gr.Button("echo").click(echo, None, out, api_name="echo")

if __name__ == "__main__":
    demo.launch()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("git") / "data", max_file_bytes=str(MAX_FILE_BYTES))
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


@pytest.fixture(scope="module")
def tokens(server):
    found = {"admin": server.token}
    for name in ("alice", "bob"):
        server.cli("users", "create", name)
        found[name] = server.cli("token", "create", "--user", name).stdout.strip()
    return found


@pytest.fixture(scope="module")
def git_home(tmp_path_factory):
    return tmp_path_factory.mktemp("git-home")


def git(home: Path, *args: str, cwd: Path | None = None, check: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
           "LC_ALL": "C"}
    done = subprocess.run(["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.com",
                           "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def repo_url(server: Server, repo_id: str, token: str | None = None, suffix: str = ".git") -> str:
    auth = f"user:{token}@" if token else ""
    return f"http://{auth}localhost:{server.port}/spaces/{repo_id}{suffix}"


def create_space(server: Server, token: str, repo_id: str, sdk: str = "gradio", private: bool = False) -> None:
    owner, name = repo_id.split("/")
    response = server.api.post("/api/repos/create", headers={"Authorization": f"Bearer {token}"},
                               json={"name": name, "organization": owner, "type": "space", "sdk": sdk,
                                     "private": private})
    assert response.status_code == 200, response.text


def head_of(server: Server, repo_id: str) -> str | None:
    return server.api.get(f"/api/spaces/{repo_id}").json()["sha"]


def wait_serving(server: Server, repo_id: str, sha: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    runtime: dict[str, object] = {}
    while time.monotonic() < deadline:
        runtime = server.api.get(f"/api/spaces/{repo_id}/runtime").json()
        if runtime.get("stage") == "RUNNING" and runtime.get("sha") == sha:
            return
        assert runtime.get("stage") not in ("BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR"), runtime
        time.sleep(0.3)
    raise AssertionError(f"{repo_id} never served {sha}: {runtime}\n{server.log.read_text()[-3000:]}")


def run_client(server: Server, tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Python with HF_ENDPOINT pointing at spacehub (huggingface_hub reads it at import) and no saved token."""
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf-home"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


# git: clone, commit, push, build, serve ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hello(server, tokens, git_home, tmp_path_factory):
    """alice/hello, created empty through the API, cloned and pushed with git: it builds and serves."""
    create_space(server, tokens["alice"], "alice/hello")
    work = tmp_path_factory.mktemp("clones") / "hello"
    cloned = git(git_home, "clone", repo_url(server, "alice/hello", tokens["alice"]), str(work))
    assert "empty repository" in cloned.stderr
    for item in EXAMPLES.joinpath("hello").iterdir():
        shutil.copy(item, work / item.name)
    git(git_home, "add", ".", cwd=work)
    git(git_home, "commit", "-m", "Hello through git", cwd=work)
    pushed = git(git_home, "push", "origin", "main", cwd=work)
    assert "main -> main" in pushed.stderr
    sha = git(git_home, "rev-parse", "HEAD", cwd=work).stdout.strip()
    # The build is queued before git's answer ends: it exists the moment `git push` returns.
    build = server.api.get(f"/api/spaces/alice/hello/builds/{sha}")
    assert build.status_code == 200, build.text
    wait_serving(server, "alice/hello", sha)
    return work


def test_a_pushed_space_builds_and_serves(server, hello):
    from gradio_client import Client

    client = Client(server.space_url("alice-hello"), verbose=False)
    assert client.predict("Ada", api_name="/greet") == "Hello Ada!"


def test_a_second_push_serves_the_new_revision(server, tokens, git_home, hello):
    app = hello / "app.py"
    app.write_text(app.read_text().replace('f"Hello {name}!"', 'f"Howdy {name}!"'))
    git(git_home, "commit", "-am", "Howdy", cwd=hello)
    git(git_home, "push", cwd=hello)
    sha = git(git_home, "rev-parse", "HEAD", cwd=hello).stdout.strip()
    assert head_of(server, "alice/hello") == sha
    wait_serving(server, "alice/hello", sha)
    from gradio_client import Client

    assert Client(server.space_url("alice-hello"), verbose=False).predict("Ada", api_name="/greet") == "Howdy Ada!"
    # The Hub-style URL (no .git) clones the same history, in git's older wire protocol too.
    again = hello.parent / "hello-again"
    git(git_home, "-c", "protocol.version=0", "clone", repo_url(server, "alice/hello", suffix=""), str(again))
    assert git(git_home, "rev-parse", "HEAD", cwd=again).stdout.strip() == sha
    assert "Howdy" in (again / "app.py").read_text()


def test_gradio_client_by_name_through_hf_endpoint(server, hello, tmp_path):
    done = run_client(server, tmp_path, (
        "from gradio_client import Client\n"
        "print(Client('alice/hello', verbose=False).predict('Ada', api_name='/greet'))\n"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] in ("Hello Ada!", "Howdy Ada!")


# Hostile pushes ----------------------------------------------------------------------------------------------


def _symlink(home: Path, work: Path) -> list[str]:
    os.symlink("/etc/passwd", work / "passwd")
    git(home, "add", "passwd", cwd=work)
    git(home, "commit", "-m", "a link", cwd=work)
    return ["push", "origin", "main"]


def _tree(home: Path, work: Path, lines: str) -> str:
    return git(home, "mktree", cwd=work, stdin=lines).stdout.strip()


def _commit_tree(home: Path, work: Path, extra_entries: str) -> None:
    """A commit whose root tree is HEAD's plus `extra_entries` (mktree lines): what `git add` would refuse."""
    listing = git(home, "ls-tree", "HEAD", cwd=work).stdout
    tree = _tree(home, work, listing + extra_entries)
    commit = git(home, "commit-tree", tree, "-p", "HEAD", "-m", "crafted", cwd=work).stdout.strip()
    git(home, "update-ref", "refs/heads/main", commit, cwd=work)


def _dot_git_folder(home: Path, work: Path) -> list[str]:
    blob = git(home, "hash-object", "-w", "--stdin", cwd=work, stdin="[core]\n\tbare = false\n").stdout.strip()
    hooks = _tree(home, work, f"100755 blob {blob}\tpost-checkout\n")
    inner = _tree(home, work, f"040000 tree {hooks}\thooks\n100644 blob {blob}\tconfig\n")
    sub = _tree(home, work, f"040000 tree {inner}\t.GIT\n")  # git itself would check this out as .git on macOS
    _commit_tree(home, work, f"040000 tree {sub}\tvendor\n")
    return ["push", "origin", "main"]


def _submodule(home: Path, work: Path) -> list[str]:
    _commit_tree(home, work, f"160000 commit {'1' * 40}\tlib\n")
    return ["push", "origin", "main"]


def _huge_blob(home: Path, work: Path) -> list[str]:
    (work / "weights.bin").write_bytes(os.urandom(MAX_FILE_BYTES + 1))
    git(home, "add", "weights.bin", cwd=work)
    git(home, "commit", "-m", "too big", cwd=work)
    return ["push", "origin", "main"]


def _hidden_in_history(home: Path, work: Path) -> list[str]:
    _symlink(home, work)
    git(home, "rm", "-q", "passwd", cwd=work)
    git(home, "commit", "-m", "the link is gone at the tip, not in history", cwd=work)
    return ["push", "origin", "main"]


def _other_branch(home: Path, work: Path) -> list[str]:
    (work / "more.txt").write_text("more")
    git(home, "add", "more.txt", cwd=work)
    git(home, "commit", "-m", "elsewhere", cwd=work)
    return ["push", "origin", "HEAD:refs/heads/feature"]


def _tag(home: Path, work: Path) -> list[str]:
    git(home, "tag", "v1", cwd=work)
    return ["push", "origin", "v1"]


def _force_push(home: Path, work: Path) -> list[str]:
    git(home, "commit", "--amend", "-m", "rewritten", cwd=work)
    return ["push", "--force", "origin", "main"]


def _delete_main(home: Path, work: Path) -> list[str]:
    return ["push", "origin", ":main"]


@pytest.fixture(scope="module")
def fortress(server, tokens, git_home, tmp_path_factory):
    """alice/fortress (static) with one good commit on main; each hostile case starts from a fresh clone."""
    create_space(server, tokens["alice"], "alice/fortress", sdk="static")
    work = tmp_path_factory.mktemp("clones") / "fortress-seed"
    git(git_home, "clone", repo_url(server, "alice/fortress", tokens["alice"]), str(work))
    (work / "README.md").write_text("---\nsdk: static\n---\n")
    (work / "index.html").write_text("<h1>safe</h1>\n")
    git(git_home, "add", ".", cwd=work)
    git(git_home, "commit", "-m", "safe", cwd=work)
    git(git_home, "push", "origin", "main", cwd=work)
    return head_of(server, "alice/fortress")


@pytest.mark.parametrize(("make", "message"), [
    (_symlink, "'passwd': symbolic links are not allowed"),
    (_dot_git_folder, "'vendor/.GIT': .git folders are not allowed"),
    (_submodule, "'lib': submodules are not allowed"),
    (_huge_blob, f"'weights.bin': the file is {MAX_FILE_BYTES + 1} bytes, over the limit of {MAX_FILE_BYTES}"),
    (_hidden_in_history, "'passwd': symbolic links are not allowed"),
    (_tag, "only branches can be pushed here ('refs/tags/v1' was refused)"),
    (_force_push, "non-fast-forward push to 'main' refused"),
    (_delete_main, "the branch 'main' cannot be deleted"),
], ids=lambda value: getattr(value, "__name__", "")[1:] or None)
def test_hostile_pushes_are_refused_and_main_is_unchanged(server, tokens, git_home, fortress, tmp_path, make,
                                                          message):
    work = tmp_path / "clone"
    git(git_home, "clone", repo_url(server, "alice/fortress", tokens["alice"]), str(work))
    pushed = git(git_home, *make(git_home, work), cwd=work, check=False)
    assert pushed.returncode != 0
    assert f"remote: spacehub: push refused: {message}" in pushed.stderr, pushed.stderr
    assert head_of(server, "alice/fortress") == fortress
    remote = git(git_home, "ls-remote", repo_url(server, "alice/fortress", tokens["alice"])).stdout
    assert remote.split() == [fortress, "HEAD", fortress, "refs/heads/main"]  # no other ref appeared either


def test_another_branch_is_stored_and_main_is_unchanged(server, tokens, git_home, tmp_path):
    create_space(server, tokens["alice"], "alice/branches", sdk="static")
    work = tmp_path / "clone"
    git(git_home, "clone", repo_url(server, "alice/branches", tokens["alice"]), str(work))
    (work / "README.md").write_text("---\nsdk: static\n---\n")
    (work / "index.html").write_text("<h1>main</h1>\n")
    git(git_home, "add", ".", cwd=work)
    git(git_home, "commit", "-m", "main", cwd=work)
    git(git_home, "push", "origin", "main", cwd=work)
    main = head_of(server, "alice/branches")
    git(git_home, *_other_branch(git_home, work), cwd=work)
    feature = git(git_home, "rev-parse", "HEAD", cwd=work).stdout.strip()
    assert feature != main and head_of(server, "alice/branches") == main  # only main builds and serves
    branches = server.api.get("/api/spaces/alice/branches/refs",
                              headers={"Authorization": f"Bearer {tokens['alice']}"}).json()["branches"]
    assert {b["name"]: b["targetCommit"] for b in branches} == {"main": main, "feature": feature}


def test_a_push_over_the_size_limit_is_refused_by_git(server, tokens, git_home, fortress, tmp_path):
    small = Server(tmp_path / "small-data", max_upload_bytes="300000")
    small.start()
    try:
        create_space(small, small.token, "admin/tiny", sdk="static")
        work = tmp_path / "tiny"
        git(git_home, "clone", repo_url(small, "admin/tiny", small.token), str(work))
        (work / "noise.bin").write_bytes(os.urandom(400_000))  # incompressible: the pack is over the limit
        git(git_home, "add", ".", cwd=work)
        git(git_home, "commit", "-m", "noise", cwd=work)
        pushed = git(git_home, "push", "origin", "main", cwd=work, check=False)
        assert pushed.returncode != 0
        assert "pack exceeds maximum allowed size" in pushed.stderr
        assert small.api.get("/api/spaces/admin/tiny").json()["sha"] is None
    finally:
        small.stop()


# Credentials -------------------------------------------------------------------------------------------------


def _info_refs(server: Server, repo_id: str, service: str, authorization: str | None = None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    return server.api.get(f"/spaces/{repo_id}.git/info/refs", params={"service": service},
                          headers={"Authorization": "", **headers})


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"anyone:{token}".encode()).decode()


def test_wrong_token_and_no_token_get_401(server, tokens, git_home, hello, tmp_path):
    for authorization in (_basic("sh_wrong_token_0123456789"), "Bearer sh_wrong_token_0123456789"):
        response = _info_refs(server, "alice/hello", "git-upload-pack", authorization)
        assert response.status_code == 401
        assert response.headers["X-Error-Code"] == "Unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    anonymous_push = _info_refs(server, "alice/hello", "git-receive-pack")
    assert anonymous_push.status_code == 401 and "WWW-Authenticate" in anonymous_push.headers
    work = tmp_path / "clone"
    git(git_home, "clone", repo_url(server, "alice/hello"), str(work))  # public: anyone reads
    (work / "x.txt").write_text("x")
    git(git_home, "add", "x.txt", cwd=work)
    git(git_home, "commit", "-m", "x", cwd=work)
    before = head_of(server, "alice/hello")
    pushed = git(git_home, "push", repo_url(server, "alice/hello", "sh_wrong_token_0123456789"), "main", cwd=work,
                 check=False)
    assert pushed.returncode != 0
    assert "Authentication failed" in pushed.stderr
    assert head_of(server, "alice/hello") == before


def test_another_user_cannot_push(server, tokens, git_home, hello, tmp_path):
    assert _info_refs(server, "alice/hello", "git-receive-pack", _basic(tokens["bob"])).status_code == 403
    work = tmp_path / "clone"
    git(git_home, "clone", repo_url(server, "alice/hello", tokens["bob"]), str(work))
    (work / "x.txt").write_text("x")
    git(git_home, "add", "x.txt", cwd=work)
    git(git_home, "commit", "-m", "x", cwd=work)
    before = head_of(server, "alice/hello")
    pushed = git(git_home, "push", "origin", "main", cwd=work, check=False)
    assert pushed.returncode != 0
    assert "403" in pushed.stderr and "you cannot push to alice/hello" in pushed.stderr
    assert head_of(server, "alice/hello") == before


def test_dumb_http_is_refused_with_a_reason(server, hello):
    response = server.api.get("/spaces/alice/hello.git/info/refs")
    assert response.status_code == 403
    assert "smart HTTP" in response.text


def test_a_gzipped_fetch_request_is_inflated(server, hello):
    import gzip

    sha = head_of(server, "alice/hello")
    request = f"0032want {sha}\n".encode() + b"0000" + b"0009done\n"
    response = server.api.post("/spaces/alice/hello.git/git-upload-pack", content=gzip.compress(request),
                               headers={"Content-Type": "application/x-git-upload-pack-request",
                                        "Content-Encoding": "gzip", "Authorization": ""})
    assert response.status_code == 200
    assert response.content.startswith(b"0008NAK\n")
    assert b"PACK" in response.content


# Private spaces -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secret_space(server, tokens, git_home, tmp_path_factory):
    """alice/secret: a private echo app, pushed with git by its owner."""
    create_space(server, tokens["alice"], "alice/secret", private=True)
    work = tmp_path_factory.mktemp("clones") / "secret"
    git(git_home, "clone", repo_url(server, "alice/secret", tokens["alice"]), str(work))
    (work / "README.md").write_text(ECHO_README)
    (work / "app.py").write_text(ECHO_APP)
    git(git_home, "add", ".", cwd=work)
    git(git_home, "commit", "-m", "echo", cwd=work)
    git(git_home, "push", "origin", "main", cwd=work)
    sha = git(git_home, "rev-parse", "HEAD", cwd=work).stdout.strip()
    server.wait_stage("alice/secret", {"RUNNING"})
    runtime = server.api.get("/api/spaces/alice/secret/runtime").json()
    assert runtime["sha"] == sha
    return "alice-secret"


def space_get(server: Server, label: str, headers: dict[str, str]) -> httpx.Response:
    """GET / through the proxy with the space's Host header and `headers`."""
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as client:
        return client.get("/", headers={"Host": server.host(label), **headers})


def _space_answer(server: Server, label: str, **headers: str) -> tuple[int, str | None, dict[str, object]]:
    response = space_get(server, label, headers)
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    shown = {key: str(value).replace(label, "LABEL") for key, value in body.items()}
    return response.status_code, response.headers.get("X-Error-Code"), shown


def test_a_private_space_is_a_missing_space_to_outsiders_at_its_host(server, tokens, secret_space):
    missing = _space_answer(server, "alice-nothing-here")
    assert missing[0] == 404 and missing[1] == "RepoNotFound"
    outsiders = [
        {},
        {"Authorization": f"Bearer {tokens['bob']}"},
        {"X-HF-Authorization": f"Bearer {tokens['bob']}"},
        {"Authorization": "Bearer sh_not_a_real_token_at_all"},
    ]
    for headers in outsiders:
        assert _space_answer(server, secret_space, **headers) == missing, headers
    for who in ("alice", "admin"):
        assert space_get(server, secret_space, {"Authorization": f"Bearer {tokens[who]}"}).status_code == 200
    via_gradio_header = space_get(server, secret_space, {"X-HF-Authorization": f"Bearer {tokens['alice']}"})
    assert via_gradio_header.status_code == 200


def test_a_private_space_is_a_missing_repo_to_outsiders_in_the_api(server, tokens, secret_space):
    def answer(repo_id: str, token: str | None) -> tuple[int, str | None]:
        response = server.api.get(f"/api/spaces/{repo_id}",
                                  headers={"Authorization": f"Bearer {token}" if token else ""})
        return response.status_code, response.headers.get("X-Error-Code")

    for token in (None, tokens["bob"]):
        assert answer("alice/secret", token) == answer("alice/nothing-here", token)
        assert answer("alice/secret", token)[0] in (401, 404)
    assert answer("alice/secret", tokens["alice"])[0] == 200


def test_a_private_space_is_a_missing_repo_to_outsiders_over_git(server, tokens, git_home, secret_space, tmp_path):
    def answer(repo_id: str, authorization: str | None) -> tuple[int, str | None, str]:
        response = _info_refs(server, repo_id, "git-upload-pack", authorization)
        return response.status_code, response.headers.get("X-Error-Code"), response.text.replace(repo_id, "REPO")

    for authorization in (None, _basic(tokens["bob"])):
        assert answer("alice/secret", authorization) == answer("alice/nothing-here", authorization)
    assert answer("alice/secret", None)[0] == 401  # anonymous: git asks for credentials
    assert answer("alice/secret", _basic(tokens["bob"]))[0] == 404
    cloned = git(git_home, "clone", repo_url(server, "alice/secret", tokens["bob"]), str(tmp_path / "x"),
                 check=False)
    assert cloned.returncode != 0 and "not found" in cloned.stderr
    git(git_home, "clone", repo_url(server, "alice/secret", tokens["alice"]), str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "app.py").read_text() == ECHO_APP


def test_the_owner_calls_a_private_space_by_name_and_the_app_never_sees_the_token(server, tokens, secret_space,
                                                                                tmp_path):
    token = tokens["alice"]
    done = run_client(server, tmp_path, (
        "import sys\n"
        "from gradio_client import Client\n"
        f"print(Client('alice/secret', token={token!r}, verbose=False).predict(api_name='/echo'))\n"))
    assert done.returncode == 0, done.stderr + server.log.read_text()[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["host"] == server.host(secret_space)  # the app's view of the request, as it saw it
    assert token not in json.dumps(seen)
    assert "x-hf-authorization" not in seen and "authorization" not in seen
    # The same through plain HTTP with `Authorization: Bearer` and the platform's session cookie.
    host = {"Host": server.host(secret_space)}
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as http:
        start = http.post("/gradio_api/call/echo", json={"data": []},
                          headers={**host, "Authorization": f"Bearer {token}",
                                   "Cookie": "spacehub_session=platform-secret; theme=dark"})
        assert start.status_code == 200, start.text
        result = http.get(f"/gradio_api/call/echo/{start.json()['event_id']}",
                          headers={**host, "Authorization": f"Bearer {token}"})
    assert "event: complete" in result.text
    data_line = next(line for line in result.text.splitlines() if line.startswith("data: "))
    seen = json.loads(json.loads(data_line.removeprefix("data: "))[0])
    assert token not in json.dumps(seen) and "platform-secret" not in json.dumps(seen)
    assert "authorization" not in seen
    assert seen.get("cookie") == "theme=dark"  # the app's own cookies still reach it


def test_without_a_token_gradio_client_finds_no_private_space(server, secret_space, tmp_path):
    done = run_client(server, tmp_path, (
        "from gradio_client import Client\n"
        "try:\n"
        "    Client('alice/secret', verbose=False)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        "else:\n"
        "    print('connected')\n"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "RepositoryNotFoundError"
