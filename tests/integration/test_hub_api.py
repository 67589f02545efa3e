"""The Hub API against a real `spacehub serve`, driven by the real `huggingface_hub` client and `hf` CLI.

Spaces as repos (create, upload, runtime, restart, pause, hardware, sleep time, variables, secrets, duplicate,
delete), model repos (upload, download, `transformers.from_pretrained` through HF_ENDPOINT), files and refs,
and the exception classes the client raises, which must be the ones it raises against the Hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from support.server import EXAMPLES, Server

pytestmark = pytest.mark.timeout(900)

MAX_FILE_BYTES = 4 * 1024 * 1024  # small caps, so the tests can cross them
SETTLED = {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE", "PAUSED", "STOPPED"}

ENV_APP = '''import json
import os

import gradio as gr


def env(names: str) -> str:
    return json.dumps({name: os.environ.get(name) for name in names.split(",")})


demo = gr.Interface(fn=env, inputs="text", outputs="text", api_name="env")

if __name__ == "__main__":
    demo.launch()
'''
ENV_README = "---\ntitle: Env\nsdk: gradio\nsdk_version: 6.31.0\napp_file: app.py\n---\n# Reports its environment\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("hub") / "data", max_file_bytes=str(MAX_FILE_BYTES))
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


@pytest.fixture(scope="module")
def api(server: Server) -> HfApi:
    return HfApi(endpoint=server.url, token=server.token)


@pytest.fixture(scope="module")
def bob(server: Server) -> HfApi:
    """Another user, in no organization of admin's."""
    server.cli("users", "create", "bob")
    token = server.cli("token", "create", "--user", "bob").stdout.strip()
    return HfApi(endpoint=server.url, token=token)


@pytest.fixture(scope="module")
def anonymous(server: Server) -> HfApi:
    return HfApi(endpoint=server.url, token=False)


def wait_runtime(api: HfApi, repo_id: str, server: Server, stages: set[str] = SETTLED, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    runtime = api.get_space_runtime(repo_id)
    while time.monotonic() < deadline:
        runtime = api.get_space_runtime(repo_id)
        if runtime.stage in stages:
            return runtime.stage
        time.sleep(0.3)
    raise AssertionError(f"{repo_id} stayed {runtime.raw}, never reached {stages}\n"
                         f"{server.log.read_text()[-4000:]}")


def wait_status(server: Server, label: str, status: int, timeout: float = 60) -> None:
    """The proxy learns of route changes over Redis pub/sub: wait until it answers `status`."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = server.space_get(label).status_code
        if got == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"{label} answered {got}, never {status}")


def wait_running(api: HfApi, repo_id: str, server: Server) -> None:
    """RUNNING, and served: the proxy hears of the new route over Redis pub/sub, a moment later."""
    stage = wait_runtime(api, repo_id, server)
    assert stage == "RUNNING", f"{repo_id} is {stage}: {api.get_space_runtime(repo_id).raw}\n" \
                               f"{server.log.read_text()[-3000:]}"
    wait_status(server, label_of(api, repo_id), 200)


def label_of(api: HfApi, repo_id: str) -> str:
    return str(api.space_info(repo_id).subdomain)


def env_app_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "env-app"
    folder.mkdir(exist_ok=True)
    (folder / "README.md").write_text(ENV_README)
    (folder / "app.py").write_text(ENV_APP)
    return folder


def app_env(server: Server, api: HfApi, repo_id: str, *names: str) -> dict[str, str | None]:
    client = Client(server.space_url(label_of(api, repo_id)), verbose=False)
    return json.loads(client.predict(",".join(names), api_name="/env"))


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def wait_env(server: Server, api: HfApi, repo_id: str, expected: dict[str, str | None],
             timeout: float = 60) -> dict[str, str | None]:
    """What the app reports, once it is `expected`: the proxy moves to a restarted app a moment after RUNNING."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        try:
            seen = app_env(server, api, repo_id, *expected)
        except Exception:  # noqa: BLE001 - the old app going away mid-call
            seen = {}
        if seen == expected:
            break
        time.sleep(0.5)
    return seen


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Identity ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acme(server: Server) -> str:
    server.cli("orgs", "create", "acme", "--member", "admin")
    return "acme"


def test_whoami_names_the_user_and_their_organizations(api: HfApi, acme: str) -> None:
    me = api.whoami()
    assert me["name"] == "admin" and me["type"] == "user"
    assert [org["name"] for org in me["orgs"]] == ["acme"]
    assert me["auth"]["accessToken"]["role"] == "write"


def test_a_space_in_an_organization_of_the_user(api: HfApi, bob: HfApi, acme: str) -> None:
    url = api.create_repo("acme/tool", repo_type="space", space_sdk="static")
    assert url.repo_id == "acme/tool" and url.repo_type == "space"
    assert api.space_info("acme/tool").author == "acme"
    with pytest.raises(HfHubHTTPError) as refused:
        bob.create_repo("acme/bobs", repo_type="space", space_sdk="static")
    assert refused.value.response.status_code == 403


def test_a_wrong_token_is_refused_as_the_hub_refuses_it(server: Server) -> None:
    wrong = HfApi(endpoint=server.url, token="sh_this-token-does-not-exist")
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        wrong.whoami()
    with pytest.raises(HfHubHTTPError) as refused:
        wrong.list_spaces(author="admin").__next__()
    assert refused.value.response.status_code == 401
    assert not isinstance(refused.value, RepositoryNotFoundError)  # the Hub's exact X-Error-Message says so
    assert refused.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


# A space, from create_repo to delete_repo ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hello(server: Server, api: HfApi) -> str:
    repo_id = "admin/hello"
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio")
    assert url == f"{server.url}/spaces/{repo_id}"
    commit = api.upload_folder(folder_path=EXAMPLES / "hello", repo_id=repo_id, repo_type="space")
    assert commit.oid == api.space_info(repo_id).sha
    wait_running(api, repo_id, server)
    return repo_id


def test_create_upload_and_run_a_space(server: Server, api: HfApi, hello: str) -> None:
    info = api.space_info(hello)
    assert sorted(s.rfilename for s in info.siblings or []) == ["README.md", "app.py"]
    assert info.sdk == "gradio" and info.subdomain == "admin-hello"
    assert info.host == server.space_url("admin-hello")
    assert info.card_data is not None and info.card_data.title == "Hello"
    runtime = api.get_space_runtime(hello)
    assert runtime.stage == "RUNNING" and runtime.hardware == "cpu-basic"
    client = Client(server.space_url("admin-hello"), verbose=False)
    assert client.predict("Ada", api_name="/greet") == "Hello Ada!"


def test_create_repo_exist_ok_and_conflict(server: Server, api: HfApi, hello: str) -> None:
    again = api.create_repo(hello, repo_type="space", space_sdk="gradio", exist_ok=True)
    assert again == f"{server.url}/spaces/{hello}"
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(hello, repo_type="space", space_sdk="gradio")
    assert conflict.value.response.status_code == 409
    assert conflict.value.response.json()["url"] == f"{server.url}/spaces/{hello}"


def test_build_and_run_logs_stream_as_on_the_hub(api: HfApi, hello: str) -> None:
    build = "".join(api.fetch_space_logs(hello, build=True))
    assert "==> Building admin/hello" in build
    assert "==> Build done" in build  # (the "Running at" line may land just after the stage turns RUNNING)


def test_restart_and_factory_reboot(server: Server, api: HfApi, hello: str) -> None:
    restarted = api.restart_space(hello)
    assert restarted.stage in ("RUNNING_APP_STARTING", "APP_STARTING", "RUNNING")
    wait_running(api, hello, server)
    rebuilt = api.restart_space(hello, factory_reboot=True)
    assert rebuilt.stage in ("RUNNING_BUILDING", "BUILDING")
    wait_running(api, hello, server)
    assert "==> Building admin/hello" in "".join(api.fetch_space_logs(hello, build=True))


def test_pause_stays_paused_through_a_commit_until_restarted(server: Server, api: HfApi, hello: str) -> None:
    assert api.pause_space(hello).stage == "PAUSED"
    wait_status(server, "admin-hello", 503)
    app = (EXAMPLES / "hello" / "app.py").read_text().replace('f"Hello {name}!"', 'f"Hi {name}!"')
    commit = api.upload_file(path_or_fileobj=app.encode(), path_in_repo="app.py", repo_id=hello, repo_type="space")
    assert api.get_space_runtime(hello).stage == "PAUSED"
    assert api.space_info(hello).sha == commit.oid  # the new revision is stored...
    assert server.api.get(f"/api/spaces/{hello}/builds/{commit.oid}").status_code == 404  # ...and not built
    assert server.space_get("admin-hello").status_code == 503
    api.restart_space(hello)
    wait_running(api, hello, server)
    client = Client(server.space_url("admin-hello"), verbose=False)
    assert client.predict("Ada", api_name="/greet") == "Hi Ada!"


def test_hardware_and_sleep_time_round_trip(api: HfApi) -> None:
    repo_id = "admin/settings"
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", space_hardware="cpu-upgrade",
                    space_sleep_time=3600)
    runtime = api.get_space_runtime(repo_id)
    assert runtime.requested_hardware == "cpu-upgrade" and runtime.sleep_time == 3600
    assert api.request_space_hardware(repo_id, "cpu-basic").requested_hardware == "cpu-basic"
    assert api.set_space_sleep_time(repo_id, 600).sleep_time == 600
    runtime = api.get_space_runtime(repo_id)
    assert (runtime.requested_hardware, runtime.sleep_time) == ("cpu-basic", 600)
    assert api.set_space_sleep_time(repo_id, -1).sleep_time == -1
    with pytest.raises(BadRequestError, match="hardware must be one of"):
        api.request_space_hardware(repo_id, "quantum-x1")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def env_space(server: Server, api: HfApi, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A space that reports its environment, created with a secret and a variable."""
    repo_id = "admin/env"
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio",
                    space_secrets=[{"key": "SECRET_ONE", "value": "s3cr3t-value-1"}],
                    space_variables=[{"key": "VAR_ONE", "value": "visible-1", "description": "first"}])
    api.upload_folder(folder_path=env_app_folder(tmp_path_factory.mktemp("env")), repo_id=repo_id,
                      repo_type="space")
    wait_running(api, repo_id, server)
    return repo_id


@pytest.fixture(scope="module")
def env_copy(server: Server, api: HfApi, env_space: str) -> str:
    copy = api.duplicate_repo(env_space, "admin/env-copy", repo_type="space")
    assert copy == f"{server.url}/spaces/admin/env-copy"
    wait_running(api, "admin/env-copy", server)
    return "admin/env-copy"


def test_new_hardware_restarts_a_running_space_on_it(server: Server, api: HfApi, hello: str) -> None:
    wait_running(api, hello, server)
    moving = api.request_space_hardware(hello, "cpu-upgrade")
    assert moving.stage == "RUNNING_APP_STARTING" and moving.requested_hardware == "cpu-upgrade"
    wait_running(api, hello, server)
    assert api.get_space_runtime(hello).hardware == "cpu-upgrade"
    assert Client(server.space_url("admin-hello"), verbose=False).predict("Ada", api_name="/greet").endswith("Ada!")


def test_secrets_and_variables_reach_the_app_and_secrets_never_come_back(server: Server, api: HfApi,
                                                                         bob: HfApi, env_space: str) -> None:
    repo_id = env_space
    assert app_env(server, api, repo_id, "VAR_ONE", "SECRET_ONE", "HF_ENDPOINT", "SPACE_ID") == {
        "VAR_ONE": "visible-1", "SECRET_ONE": "s3cr3t-value-1", "HF_ENDPOINT": server.url, "SPACE_ID": repo_id}

    variables = api.get_space_variables(repo_id)
    assert (variables["VAR_ONE"].value, variables["VAR_ONE"].description) == ("visible-1", "first")
    assert list(api.get_space_secrets(repo_id)) == ["SECRET_ONE"]

    after = api.add_space_variable(repo_id, "VAR_TWO", "visible-2")
    assert sorted(after) == ["VAR_ONE", "VAR_TWO"]
    api.add_space_secret(repo_id, "SECRET_TWO", "s3cr3t-value-2")
    wait_running(api, repo_id, server)  # a changed environment restarts the app
    expected = {"VAR_TWO": "visible-2", "SECRET_TWO": "s3cr3t-value-2"}
    assert wait_env(server, api, repo_id, expected) == expected

    # No API answer carries a secret's value, not even to its owner.
    answers = [server.api.get(path).text for path in (
        f"/api/spaces/{repo_id}", f"/api/spaces/{repo_id}/runtime", f"/api/spaces/{repo_id}/variables",
        f"/api/spaces/{repo_id}/secrets", "/api/spaces?full=true", f"/api/spaces/{repo_id}/logs/build?follow=false",
        f"/api/spaces/{repo_id}/logs/run?follow=false")]
    assert not [answer for answer in answers if "s3cr3t-value" in answer]
    with pytest.raises(HfHubHTTPError) as refused:
        bob.get_space_variables(repo_id)
    assert refused.value.response.status_code == 403

    assert "VAR_ONE" not in api.delete_space_variable(repo_id, "VAR_ONE")
    api.delete_space_secret(repo_id, "SECRET_ONE")
    assert list(api.get_space_secrets(repo_id)) == ["SECRET_TWO"]
    wait_running(api, repo_id, server)


def test_a_duplicate_runs_with_the_variables_but_without_the_secrets(server: Server, api: HfApi, env_space: str,
                                                                    env_copy: str) -> None:
    variables = {key: variable.value for key, variable in api.get_space_variables(env_space).items()}
    secrets = list(api.get_space_secrets(env_space))
    assert variables and secrets
    assert api.get_space_variables(env_copy).keys() == variables.keys()
    assert api.get_space_secrets(env_copy) == {}
    seen = app_env(server, api, env_copy, *variables, *secrets)
    assert seen == {**variables, **dict.fromkeys(secrets)}
    assert sorted(api.list_repo_files(env_copy, repo_type="space")) == ["README.md", "app.py"]
    assert api.list_repo_commits(env_copy, repo_type="space")[0].title == f"Duplicated from {env_space}"
    again = api.duplicate_repo(env_space, env_copy, repo_type="space", exist_ok=True)
    assert again == f"{server.url}/spaces/{env_copy}"


def test_space_files_download_like_model_files(server: Server, env_space: str, tmp_path: Path) -> None:
    snapshot = Path(snapshot_download(env_space, repo_type="space", endpoint=server.url, token=False,
                                      cache_dir=tmp_path / "cache"))
    assert {p.name: p.read_text() for p in snapshot.iterdir()} == {"README.md": ENV_README, "app.py": ENV_APP}
    one = hf_hub_download(env_space, "app.py", repo_type="space", endpoint=server.url, token=False,
                          cache_dir=tmp_path / "cache-one")
    assert Path(one).read_text() == ENV_APP


def _app_port(server: Server, repo_id: str) -> int:
    handle = server.space_handle(repo_id)
    assert handle is not None, f"{repo_id} has no app"
    return int(handle["target"].rsplit(":", 1)[1])


def test_delete_repo_removes_everything(server: Server, api: HfApi, env_copy: str) -> None:
    repo_id = env_copy
    port = _app_port(server, repo_id)
    api.delete_repo(repo_id, repo_type="space")
    with pytest.raises(RepositoryNotFoundError):
        api.space_info(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.get_space_runtime(repo_id)
    assert not (server.data_dir / "repos" / "admin" / "env-copy.git").exists()
    wait_status(server, "admin-env-copy", 404)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the app is stopped by a job, right after
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        except httpx.TransportError:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the deleted space's app still answers")
    api.delete_repo(repo_id, repo_type="space", missing_ok=True)
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo_id, repo_type="space")


def test_hf_upload_from_the_command_line(server: Server, api: HfApi, tmp_path: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": server.token, "HF_HOME": str(tmp_path / "hf")}
    hf = Path(sys.executable).with_name("hf")  # the CLI installed with huggingface_hub
    assert hf.exists()
    result = subprocess.run([str(hf), "upload", "admin/cli-space", str(EXAMPLES / "hello"), ".",
                             "--repo-type", "space", "--commit-message", "from the CLI"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(api.list_repo_files("admin/cli-space", repo_type="space")) == ["README.md", "app.py"]
    assert api.list_repo_commits("admin/cli-space", repo_type="space")[0].title == "from the CLI"
    wait_running(api, "admin/cli-space", server)


# Files, commits and refs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files_repo(api: HfApi) -> str:
    repo_id = "admin/files"
    api.create_repo(repo_id)  # the default type: a model
    api.create_commit(repo_id, [
        CommitOperationAdd("README.md", b"---\nlicense: mit\ntags: [demo]\n---\n# files\n"),
        CommitOperationAdd("sub dir/a b.txt", b"spaces in names\n"),
        CommitOperationAdd("x/y/z.txt", b"deep\n"),
        CommitOperationAdd("old/one.txt", b"1"),
        CommitOperationAdd("old/two.txt", b"2"),
        CommitOperationAdd("gone.txt", b"bye"),
    ], commit_message="first", commit_description="the first commit")
    return repo_id


def test_create_commit_overlays_additions_and_deletions(api: HfApi, files_repo: str) -> None:
    api.create_commit(files_repo, [
        CommitOperationDelete("gone.txt"),
        CommitOperationDelete("old/", is_folder=True),
        CommitOperationAdd("new.txt", b"new"),
    ], commit_message="second")
    assert sorted(api.list_repo_files(files_repo)) == ["README.md", "new.txt", "sub dir/a b.txt", "x/y/z.txt"]
    commits = api.list_repo_commits(files_repo)
    assert [c.title for c in commits] == ["second", "first"]
    assert commits[1].message == "the first commit" and commits[0].authors == ["admin"]
    with pytest.raises(EntryNotFoundError):
        api.delete_file("no-such-file.txt", files_repo)


def test_a_commit_on_a_moved_branch_is_a_conflict(api: HfApi, files_repo: str) -> None:
    head = api.repo_info(files_repo).sha
    api.upload_file(path_or_fileobj=b"moved", path_in_repo="moved.txt", repo_id=files_repo, parent_commit=head)
    with pytest.raises(HfHubHTTPError) as conflict:
        api.upload_file(path_or_fileobj=b"late", path_in_repo="late.txt", repo_id=files_repo, parent_commit=head)
    assert conflict.value.response.status_code == 409
    assert "late.txt" not in api.list_repo_files(files_repo)


def test_tree_and_paths_info_with_encoded_paths(api: HfApi, files_repo: str) -> None:
    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(files_repo)}
    assert top["sub dir"] == "RepoFolder" and top["README.md"] == "RepoFile"
    inside = [entry.path for entry in api.list_repo_tree(files_repo, path_in_repo="sub dir")]
    assert inside == ["sub dir/a b.txt"]
    deep = [entry.path for entry in api.list_repo_tree(files_repo, path_in_repo="x", recursive=True)]
    assert deep == ["x/y", "x/y/z.txt"]
    expanded = list(api.list_repo_tree(files_repo, path_in_repo="x/y", expand=True))
    assert expanded[0].last_commit is not None and expanded[0].last_commit.title == "first"
    info = api.get_paths_info(files_repo, ["sub dir/a b.txt", "x", "missing.txt"])
    assert {entry.path for entry in info} == {"sub dir/a b.txt", "x"}
    file_entry = next(entry for entry in info if entry.path == "sub dir/a b.txt")
    assert file_entry.size == len(b"spaces in names\n")  # type: ignore[union-attr]
    assert file_entry.blob_id == git_blob_id(b"spaces in names\n")  # type: ignore[union-attr]
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(files_repo, path_in_repo="no/such/folder"))


def test_branches_and_tags_with_slashes(server: Server, api: HfApi, files_repo: str) -> None:
    api.create_branch(files_repo, branch="feature/x")
    api.upload_file(path_or_fileobj=b"on a branch", path_in_repo="branch only.txt", repo_id=files_repo,
                    revision="feature/x")
    assert "branch only.txt" in api.list_repo_files(files_repo, revision="feature/x")
    assert "branch only.txt" not in api.list_repo_files(files_repo)
    path = hf_hub_download(files_repo, "branch only.txt", revision="feature/x", endpoint=server.url,
                           token=server.token, cache_dir=server.data_dir.parent / "cache")
    assert Path(path).read_bytes() == b"on a branch"
    api.create_tag(files_repo, tag="v1.0", tag_message="first release")
    refs = api.list_repo_refs(files_repo)
    assert {b.name for b in refs.branches} == {"main", "feature/x"}
    assert [t.name for t in refs.tags] == ["v1.0"]
    assert refs.tags[0].target_commit == api.repo_info(files_repo).sha
    assert api.repo_info(files_repo, revision="v1.0").sha == refs.tags[0].target_commit
    assert api.repo_info(files_repo, revision="feature/x").sha != api.repo_info(files_repo).sha
    api.create_branch(files_repo, branch="feature/x", exist_ok=True)
    api.delete_branch(files_repo, branch="feature/x")
    api.delete_tag(files_repo, tag="v1.0")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(files_repo, revision="feature/x")


def test_commits_come_in_pages_the_client_follows(server: Server, api: HfApi) -> None:
    repo_id = "admin/history"
    api.create_repo(repo_id)
    for index in range(55):  # more than one page of 50
        api.create_commit(repo_id, [CommitOperationAdd("counter.txt", str(index).encode())],
                          commit_message=f"count {index}")
    api.create_branch(repo_id, branch="team/dev")
    first = server.api.get(f"/api/models/{repo_id}/commits/team%2Fdev")
    assert len(first.json()) == 50
    assert first.headers["Link"] == f'<{server.url}/api/models/{repo_id}/commits/team%2Fdev?p=1>; rel="next"'
    titles = [commit.title for commit in api.list_repo_commits(repo_id, revision="team/dev")]
    assert titles == [f"count {index}" for index in reversed(range(55))]


def test_gitignore_is_applied_at_preupload(api: HfApi, tmp_path: Path) -> None:
    folder = tmp_path / "ignoring"
    (folder / "logs").mkdir(parents=True)
    (folder / ".gitignore").write_text("*.log\nlogs/\n")
    (folder / "kept.txt").write_text("kept")
    (folder / "debug.log").write_text("noise")
    (folder / "logs" / "x.txt").write_text("noise")
    api.create_repo("admin/ignoring")
    api.upload_folder(folder_path=folder, repo_id="admin/ignoring")
    assert sorted(api.list_repo_files("admin/ignoring")) == [".gitignore", "kept.txt"]


def test_an_unchanged_upload_makes_no_commit(api: HfApi, files_repo: str) -> None:
    before = api.list_repo_commits(files_repo)
    api.upload_file(path_or_fileobj=b"new", path_in_repo="new.txt", repo_id=files_repo)  # the same bytes
    assert api.list_repo_commits(files_repo) == before


def test_upload_folder_in_several_commits(api: HfApi, tmp_path: Path) -> None:
    """huggingface_hub 2.4 with hf_xet pipelines a big upload_folder into commits of at most 250 files."""
    folder = tmp_path / "many"
    for index in range(600):
        (folder / f"part{index // 100}").mkdir(parents=True, exist_ok=True)
        (folder / f"part{index // 100}" / f"file{index:03}.txt").write_text(f"file {index}\n")
    api.create_repo("admin/many")
    api.upload_folder(folder_path=folder, repo_id="admin/many", commit_message="many files")
    files = api.list_repo_files("admin/many")
    assert len(files) == 600 and "part5/file599.txt" in files
    titles = [commit.title for commit in api.list_repo_commits("admin/many")]
    assert len(titles) >= 2 and titles[-1] == "many files" and "(part 2)" in titles[-2]


def test_readme_metadata_is_validated_before_upload(api: HfApi, hello: str) -> None:
    bad = b"---\nsdk: gradio\ncolorFrom: chartreuse\n---\n"
    with pytest.raises(ValueError, match="colorFrom"):
        api.upload_file(path_or_fileobj=bad, path_in_repo="README.md", repo_id=hello, repo_type="space")


def test_upload_caps_and_path_rules(server: Server, api: HfApi, files_repo: str) -> None:
    too_big = b"x" * (MAX_FILE_BYTES + 1)
    with pytest.raises(HfHubHTTPError) as refused:
        api.upload_file(path_or_fileobj=too_big, path_in_repo="big.bin", repo_id=files_repo)
    assert refused.value.response.status_code == 413
    # A client that skips preupload meets the same cap while its commit streams in.
    import base64
    lines = [{"key": "header", "value": {"summary": "sneaky", "description": ""}},
             {"key": "file", "value": {"content": base64.b64encode(too_big).decode(), "path": "big.bin",
                                       "encoding": "base64"}}]
    response = server.api.post(f"/api/models/{files_repo}/commit/main",
                               content=b"".join(json.dumps(line).encode() + b"\n" for line in lines),
                               headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 413, response.text
    # The client refuses `..` and `.git/` itself; the server refuses them from any client.
    for path in ("../escape.txt", ".git/config", "a/.GIT/hooks/post-update"):
        preupload = server.api.post(f"/api/models/{files_repo}/preupload/main",
                                    json={"files": [{"path": path, "size": 1, "sample": ""}]})
        assert (preupload.status_code, preupload.headers["X-Error-Code"]) == (400, "UnsafeUpload")
        line = {"key": "file", "value": {"content": "eA==", "path": path, "encoding": "base64"}}
        commit = server.api.post(f"/api/models/{files_repo}/commit/main",
                                 content=json.dumps(lines[0]).encode() + b"\n" + json.dumps(line).encode(),
                                 headers={"Content-Type": "application/x-ndjson"})
        assert (commit.status_code, commit.headers["X-Error-Code"]) == (400, "UnsafeUpload"), commit.text
    assert "escape.txt" not in str(api.list_repo_files(files_repo))
    assert not (server.data_dir / "tmp").exists() or list((server.data_dir / "tmp").iterdir()) == []


# Models: upload, download, from_pretrained ------------------------------------------------------------------


TINY_BERT = """
import json, sys
import torch
from transformers import BertConfig, BertModel
torch.manual_seed(0)
config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=37, max_position_embeddings=64)
BertModel(config).save_pretrained(sys.argv[1])
"""

LOAD_AND_RUN = """
import json, sys
import torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], **json.loads(sys.argv[2]))
model.eval()
with torch.no_grad():
    out = model(input_ids=torch.tensor([[1, 2, 3, 4, 5]])).last_hidden_state
print(json.dumps(out.flatten().tolist()))
"""


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


@pytest.fixture(scope="module")
def tiny_model(server: Server, api: HfApi, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-bert")
    run_python(TINY_BERT, str(folder), env={"HF_HUB_OFFLINE": "1"})
    (folder / "README.md").write_text("---\nlibrary_name: transformers\ntags: [tiny]\n---\n# Tiny BERT\n")
    url = api.create_repo("admin/tiny-bert")
    assert url == f"{server.url}/admin/tiny-bert" and url.repo_type == "model"
    api.upload_folder(folder_path=folder, repo_id="admin/tiny-bert")
    return folder


def test_from_pretrained_loads_a_model_through_hf_endpoint(server: Server, tiny_model: Path,
                                                           tmp_path: Path) -> None:
    local = json.loads(run_python(LOAD_AND_RUN, str(tiny_model), "{}", env={"HF_HUB_OFFLINE": "1"}))
    hub_env = {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    hub_env_no_token = {**hub_env, "HF_TOKEN": ""}
    remote = json.loads(run_python(LOAD_AND_RUN, "admin/tiny-bert", "{}", env=hub_env_no_token))
    assert remote == local


def test_snapshot_download_gets_every_file_with_matching_hashes(server: Server, api: HfApi, tiny_model: Path,
                                                                tmp_path: Path) -> None:
    snapshot = Path(snapshot_download("admin/tiny-bert", endpoint=server.url, cache_dir=tmp_path / "cache",
                                      token=False))
    local = {p.relative_to(tiny_model).as_posix(): sha256_of(p) for p in tiny_model.rglob("*") if p.is_file()}
    remote = {p.relative_to(snapshot).as_posix(): sha256_of(p) for p in snapshot.rglob("*") if p.is_file()}
    assert remote == local and "model.safetensors" in remote
    info = api.model_info("admin/tiny-bert", files_metadata=True)
    assert info.library_name == "transformers" and "tiny" in (info.tags or [])
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert sizes["model.safetensors"] == (tiny_model / "model.safetensors").stat().st_size


def test_downloads_answer_head_and_ranges_with_the_hub_headers(server: Server, api: HfApi,
                                                              tiny_model: Path) -> None:
    sha = api.model_info("admin/tiny-bert").sha
    blob = (tiny_model / "model.safetensors").read_bytes()
    url = "/admin/tiny-bert/resolve/main/model.safetensors"
    head = server.api.head(url)
    assert head.status_code == 200
    assert head.headers["X-Repo-Commit"] == sha
    assert head.headers["ETag"] == f'"{git_blob_id(blob)}"'
    assert int(head.headers["Content-Length"]) == len(blob)
    assert not [name for name in head.headers if name.lower().startswith("x-xet")]
    part = server.api.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == blob[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(blob)}"
    assert server.api.get(url, headers={"Range": f"bytes={len(blob)}-"}).status_code == 416
    readme = server.api.get("/admin/tiny-bert/resolve/main/README.md")
    assert readme.headers["Content-Type"].startswith("text/plain")
    missing = server.api.head("/admin/tiny-bert/resolve/main/nope.bin")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"
    assert missing.headers["X-Repo-Commit"] == sha


def test_a_big_file_is_stored_once_whatever_the_revisions(server: Server, api: HfApi) -> None:
    big = os.urandom(3 * 1024 * 1024)  # random: git's zlib cannot shrink it, so copies would show on disk
    repo_id = "admin/big"
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=big, path_in_repo="weights.bin", repo_id=repo_id)
    for index in range(3):  # new revisions that keep the file, and a copy of it under another name
        api.upload_file(path_or_fileobj=f"rev {index}".encode(), path_in_repo="notes.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=big, path_in_repo="copy-of-weights.bin", repo_id=repo_id)
    objects = server.data_dir / "repos" / "models" / "admin" / "big.git" / "objects"
    stored = sum(path.stat().st_size for path in objects.rglob("*") if path.is_file())
    assert len(big) < stored < 1.2 * len(big)
    path = hf_hub_download(repo_id, "copy-of-weights.bin", endpoint=server.url, token=server.token,
                           cache_dir=server.data_dir.parent / "cache-big")
    assert Path(path).read_bytes() == big


# Privacy, lists and errors ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_space(api: HfApi) -> str:
    repo_id = "admin/hidden-plans"
    api.create_repo(repo_id, repo_type="space", space_sdk="static", private=True)
    api.upload_file(path_or_fileobj=b"<h1>secret plans</h1>", path_in_repo="index.html", repo_id=repo_id,
                    repo_type="space")
    return repo_id


def test_a_private_space_is_missing_to_everyone_else(server: Server, api: HfApi, bob: HfApi,
                                                     anonymous: HfApi, private_space: str) -> None:
    assert api.space_info(private_space).private is True
    for other in (bob, anonymous):
        with pytest.raises(RepositoryNotFoundError):
            other.space_info(private_space)
        with pytest.raises(RepositoryNotFoundError):
            other.list_repo_files(private_space, repo_type="space")
        with pytest.raises(RepositoryNotFoundError):
            other.get_space_runtime(private_space)
        assert private_space not in [s.id for s in other.list_spaces(search="hidden")]
        assert private_space not in [s.id for s in other.list_spaces(author="admin")]
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(private_space, "index.html", repo_type="space", endpoint=server.url, token=False,
                        cache_dir=server.data_dir.parent / "cache-private")
    assert private_space in [s.id for s in api.list_spaces(search="hidden")]
    mine = hf_hub_download(private_space, "index.html", repo_type="space", endpoint=server.url, token=server.token,
                           cache_dir=server.data_dir.parent / "cache-private-owner")
    assert Path(mine).read_bytes() == b"<h1>secret plans</h1>"


def test_visibility_and_moves(api: HfApi, bob: HfApi, acme: str) -> None:
    api.create_repo("admin/movable")
    api.upload_file(path_or_fileobj=b"m", path_in_repo="m.txt", repo_id="admin/movable")
    api.move_repo("admin/movable", "acme/moved")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("admin/movable")
    assert api.list_repo_files("acme/moved") == ["m.txt"]
    api.update_repo_settings("acme/moved", private=True)
    with pytest.raises(RepositoryNotFoundError):
        bob.model_info("acme/moved")
    api.update_repo_settings("acme/moved", visibility="public")
    assert bob.model_info("acme/moved").private is False
    with pytest.raises(HfHubHTTPError) as refused:
        bob.move_repo("acme/moved", "bob/mine")
    assert refused.value.response.status_code == 403


def test_the_client_raises_the_hubs_exception_classes(server: Server, api: HfApi, bob: HfApi,
                                                      files_repo: str, private_space: str) -> None:
    cache = server.data_dir.parent / "cache-errors"
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("admin/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("admin/does-not-exist", "x.txt", endpoint=server.url, token=server.token, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        bob.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=private_space, repo_type="space")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(files_repo, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files(files_repo, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(files_repo, "new.txt", revision="no-such-branch", endpoint=server.url,
                        token=server.token, cache_dir=cache)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(files_repo, "no-such-file.txt", endpoint=server.url, token=server.token, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("admin/anything")
    with pytest.raises(HfHubHTTPError) as refused:
        bob.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=files_repo)
    assert refused.value.response.status_code == 403


def test_list_spaces_filters_sorts_and_pages(server: Server, api: HfApi, hello: str) -> None:
    for index in range(3):
        api.create_repo(f"admin/page-{index}", repo_type="space", space_sdk="static")
    ids = [space.id for space in api.list_spaces(author="admin", search="page-", sort="created_at")]
    assert ids == ["admin/page-2", "admin/page-1", "admin/page-0"]
    assert len(list(api.list_spaces(author="admin", search="page-", limit=2))) == 2
    assert [s.id for s in api.list_spaces(filter="gradio", search="hello")] == [hello]
    first = server.api.get("/api/spaces", params={"author": "admin", "search": "page-", "limit": 1,
                                                  "sort": "createdAt"})
    link = first.headers["Link"]
    assert link.startswith(f"<{server.url}/api/spaces?") and link.endswith('>; rel="next"')
    second = httpx.get(link[1:link.index(">")], headers={"Authorization": f"Bearer {server.token}"})
    assert [s["id"] for s in first.json() + second.json()] == ["admin/page-2", "admin/page-1"]
    expanded = next(iter(api.list_spaces(search="hello", expand=["sdk", "runtime"])))
    assert expanded.sdk == "gradio" and expanded.runtime is not None and expanded.author is None

def test_list_models(api: HfApi, tiny_model: Path, private_space: str) -> None:
    assert [model.id for model in api.list_models(author="admin", search="tiny")] == ["admin/tiny-bert"]
    assert [model.id for model in api.list_models(filter="tiny")] == ["admin/tiny-bert"]
    assert private_space not in [model.id for model in api.list_models()]  # a space is not a model
