"""Large files the Hub's way against a real `spacehub serve`: the real huggingface_hub client, git and git-lfs.

huggingface_hub >= 1.20 uploads `lfs` files through Xet whenever hf_xet is installed, unless HF_HUB_DISABLE_XET
is set (no server answer changes that), so these tests set it, as a spacehub user does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, constants, hf_hub_download
from huggingface_hub import _commit_api as commit_api_module
from huggingface_hub.errors import HfHubHTTPError

from spacehub import lfs
from spacehub.context import Platform
from spacehub.settings import load_settings
from support.server import Server

pytestmark = pytest.mark.timeout(1200)

GB = 1024 ** 3
MB = 1024 ** 2
THRESHOLD = 1 * MB  # small, so a sharded tiny model goes through LFS too


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("lfs") / "data", lfs_threshold_bytes=str(THRESHOLD),
                 lfs_chunk_bytes=str(128 * MB))
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()  # apps outlive serve on purpose (re-adoption); not past this module


@pytest.fixture(autouse=True)
def no_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    # What HF_HUB_DISABLE_XET=1 does at import; the client reads the constant when it uploads.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture(scope="module")
def api(server: Server) -> HfApi:
    return HfApi(endpoint=server.url, token=server.token)


@pytest.fixture
def upload_modes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """What the server's preupload told the client, per path (recorded from the client's own operations)."""
    seen: list[dict[str, str]] = []
    original = commit_api_module._fetch_upload_modes

    def recording(additions: Any, *args: Any, **kwargs: Any) -> None:
        additions = list(additions)
        original(additions, *args, **kwargs)
        seen.append({op.path_in_repo: op._upload_mode for op in additions})

    monkeypatch.setattr(commit_api_module, "_fetch_upload_modes", recording)
    return seen


def sparse_file(path: Path, size: int, head: bytes) -> str:
    """A file of `size` bytes, zeros after `head`, that takes no disk; returns its sha256."""
    with open(path, "wb") as out:
        out.write(head)
        out.truncate(size)
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(8 * MB):
            digest.update(chunk)
    return digest.hexdigest()


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def object_path(server: Server, oid: str) -> Path:
    return server.data_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def git_blob(server: Server, repo: str, path: str, prefix: str = "models/") -> bytes:
    git_dir = server.data_dir / "repos" / f"{prefix}{repo}.git"
    return subprocess.run(["git", f"--git-dir={git_dir}", "show", f"main:{path}"], capture_output=True,
                          check=True).stdout


# The 1 GB path ----------------------------------------------------------------------------------------------


def test_one_gigabyte_through_upload_file_folder_and_commit(server: Server, api: HfApi, tmp_path: Path,
                                                             upload_modes: list[dict[str, str]]) -> None:
    big = tmp_path / "folder" / "weights.bin"
    big.parent.mkdir()
    sha = sparse_file(big, GB, b"spacehub one gigabyte\n")
    assert server.process is not None
    pid = server.process.pid
    before = rss_kb(pid)

    api.create_repo("admin/big")
    api.upload_file(path_or_fileobj=str(big), path_in_repo="weights.bin", repo_id="admin/big")
    assert upload_modes[-1] == {"weights.bin": "lfs"}

    api.create_repo("admin/big-folder")
    api.upload_folder(folder_path=str(big.parent), repo_id="admin/big-folder")
    assert upload_modes[-1] == {"weights.bin": "lfs"}

    operation = CommitOperationAdd(path_in_repo="copy/weights.bin", path_or_fileobj=str(big))
    api.create_commit("admin/big", operations=[operation], commit_message="another copy")
    assert operation._upload_mode == "lfs"

    peak = rss_kb(pid, "VmHWM")
    print(f"serve RSS before the uploads: {before} kB; peak during them: {peak} kB")  # shown with -s
    assert peak - before < 100 * 1024, f"serve grew from {before} kB to a peak of {peak} kB"

    # Stored once, as an object; git holds pointers; .gitattributes tracks the paths.
    assert object_path(server, sha).stat().st_size == GB
    pointer = git_blob(server, "admin/big", "weights.bin")
    assert pointer == f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {GB}\n".encode()
    assert "filter=lfs" in git_blob(server, "admin/big", ".gitattributes").decode()
    entries = {entry.path: entry for entry in api.list_repo_tree("admin/big", recursive=True)}
    assert entries["weights.bin"].size == GB
    assert entries["weights.bin"].lfs is not None and entries["weights.bin"].lfs.sha256 == sha
    info = api.model_info("admin/big", files_metadata=True)
    sibling = next(s for s in info.siblings or [] if s.rfilename == "copy/weights.bin")
    assert sibling.lfs is not None and sibling.lfs.sha256 == sha and sibling.size == GB

    # Downloads: the Hub's headers, then an interrupted download that resumes, byte-identical.
    head = httpx.head(f"{server.url}/admin/big/resolve/main/weights.bin",
                      headers={"Authorization": f"Bearer {server.token}"})
    assert head.headers["x-linked-etag"] == f'"{sha}"' and head.headers["etag"] == f'"{sha}"'
    assert head.headers["x-linked-size"] == str(GB) and head.headers["content-length"] == str(GB)
    ranged = httpx.get(f"{server.url}/admin/big/resolve/main/weights.bin",
                       headers={"Authorization": f"Bearer {server.token}", "Range": "bytes=8-20"})
    assert ranged.status_code == 206 and ranged.content == b" one gigabyte"
    assert ranged.headers["content-range"] == f"bytes 8-20/{GB}"

    # A relay that cuts the first download after 200 MB, as a flaky network would: the client resumes with a
    # Range request and the file still comes out byte-identical.
    cache = tmp_path / "cache"
    with CuttingRelay(server.port, cut_after=200 * MB) as relay:
        path = Path(hf_hub_download("admin/big", "weights.bin", cache_dir=cache, token=server.token,
                                    endpoint=f"http://localhost:{relay.port}"))
    assert relay.cut, "the relay never cut the download"
    resumed = [head for head in relay.requests if head.startswith(b"GET ") and b"range: bytes=" in head.lower()]
    assert resumed, relay.requests
    assert int(resumed[0].lower().split(b"range: bytes=")[1].split(b"-")[0]) > 0
    assert path.stat().st_size == GB and file_sha256(path) == sha
    path.unlink()
    path.resolve().unlink(missing_ok=True)


class CuttingRelay:
    """A TCP relay to the server that closes the first GET of a /resolve/ URL after `cut_after` response bytes."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port, self.cut_after = upstream_port, cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.cut = False
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> CuttingRelay:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        state = {"cut_this": False}

        def requests() -> None:
            try:
                while data := client.recv(65536):
                    if data[:4] in (b"GET ", b"HEAD"):
                        self.requests.append(data.split(b"\r\n\r\n")[0])
                        if data.startswith(b"GET ") and b"/resolve/" in data.split(b"\r\n")[0] and not self.cut:
                            state["cut_this"] = True
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=requests, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
                sent += len(data)
                if state["cut_this"] and sent > self.cut_after:
                    self.cut = True
                    break
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


# Small LFS files, basic transfer, verification ------------------------------------------------------------


def test_basic_transfer_and_download(server: Server, api: HfApi, tmp_path: Path,
                                     upload_modes: list[dict[str, str]]) -> None:
    data = os.urandom(3 * MB)
    api.create_repo("admin/basic", private=True)
    api.upload_file(path_or_fileobj=data, path_in_repo="data/blob.bin", repo_id="admin/basic")
    api.upload_file(path_or_fileobj=b"small", path_in_repo="small.txt", repo_id="admin/basic")
    assert upload_modes[-2:] == [{"data/blob.bin": "lfs"}, {"small.txt": "regular"}]
    sha = hashlib.sha256(data).hexdigest()
    path = hf_hub_download("admin/basic", "data/blob.bin", cache_dir=tmp_path, token=server.token,
                           endpoint=server.url)
    assert Path(path).read_bytes() == data
    assert (tmp_path / "models--admin--basic" / "blobs" / sha).exists()  # cached under its sha256
    # A path the repo's .gitattributes tracks goes to LFS whatever its size.
    api.upload_file(path_or_fileobj=b"*.pt filter=lfs diff=lfs merge=lfs -text\n", path_in_repo=".gitattributes",
                    repo_id="admin/basic")
    api.upload_file(path_or_fileobj=b"tiny tensor", path_in_repo="t.pt", repo_id="admin/basic")
    assert upload_modes[-1] == {"t.pt": "lfs"}
    [tracked] = api.get_paths_info("admin/basic", ["t.pt"])
    assert tracked.lfs is not None and tracked.size == len(b"tiny tensor")
    # The same content again: unchanged, nothing uploaded, no new commit.
    before = api.list_repo_commits("admin/basic")
    api.upload_file(path_or_fileobj=data, path_in_repo="data/blob.bin", repo_id="admin/basic")
    assert len(api.list_repo_commits("admin/basic")) == len(before)


def _batch(server: Server, repo: str, oid: str, size: int, token: str | None = None,
           transfers: tuple[str, ...] = ("basic",)) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/{repo}.git/info/lfs/objects/batch",
                        headers={"Authorization": f"Bearer {token or server.token}",
                                 "Accept": "application/vnd.git-lfs+json",
                                 "Content-Type": "application/vnd.git-lfs+json"},
                        json={"operation": "upload", "transfers": list(transfers), "hash_algo": "sha256",
                              "objects": [{"oid": oid, "size": size}]})
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()["objects"][0]
    return found


def _commit_lfs(api: HfApi, repo: str, path: str, oid: str, size: int) -> None:
    body = "\n".join(json.dumps(line) for line in [
        {"key": "header", "value": {"summary": "lfs by id", "description": ""}},
        {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}}])
    response = httpx.post(f"{api.endpoint}/api/models/{repo}/commit/main", content=body,
                          headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/x-ndjson"})
    if response.status_code >= 400:
        raise HfHubHTTPError(f"{response.status_code}: {response.text}", response=response)


def test_mismatched_bytes_refused_and_nothing_stored(server: Server, api: HfApi) -> None:
    api.create_repo("admin/checked")
    real = os.urandom(2 * MB)
    oid = hashlib.sha256(real).hexdigest()
    put = _batch(server, "admin/checked", oid, len(real))["actions"]["upload"]["href"]
    staging = server.data_dir / "lfs" / "staging"

    wrong = bytearray(real)
    wrong[1000] ^= 0xFF
    refused = httpx.put(put, content=bytes(wrong))
    assert refused.status_code == 400 and "sha256" in refused.json()["message"]
    too_long = httpx.put(put, content=real + b"x")
    assert too_long.status_code == 413
    too_short = httpx.put(put, content=real[:-1])
    assert too_short.status_code == 400 and "declared" in too_short.json()["message"]
    assert not object_path(server, oid).exists()
    assert not staging.exists() or not list(staging.iterdir())

    with pytest.raises(HfHubHTTPError, match="403"):  # never uploaded: the commit may not name it
        _commit_lfs(api, "admin/checked", "weights.bin", oid, len(real))
    assert httpx.put(put, content=real).status_code == 200
    assert object_path(server, oid).stat().st_size == len(real)
    with pytest.raises(HfHubHTTPError, match="403"):  # the right object, the wrong size
        _commit_lfs(api, "admin/checked", "weights.bin", oid, len(real) + 1)
    _commit_lfs(api, "admin/checked", "weights.bin", oid, len(real))
    [info] = api.get_paths_info("admin/checked", ["weights.bin"])
    assert info.lfs is not None and info.lfs.sha256 == oid and info.size == len(real)


def test_another_users_object_is_refused(server: Server, api: HfApi) -> None:
    server.cli("users", "create", "carol")
    token = server.cli("token", "create", "--user", "carol").stdout.strip()
    carol = HfApi(endpoint=server.url, token=token)
    secret = os.urandom(2 * MB)
    oid = hashlib.sha256(secret).hexdigest()
    api.create_repo("admin/private-weights", private=True)
    api.upload_file(path_or_fileobj=secret, path_in_repo="secret.bin", repo_id="admin/private-weights")
    assert object_path(server, oid).exists()

    carol.create_repo("carol/mine")
    with pytest.raises(HfHubHTTPError, match="403"):
        _commit_lfs(carol, "carol/mine", "stolen.bin", oid, len(secret))
    # Knowing the hash is not enough at the batch API either: carol is asked for the bytes.
    answer = _batch(server, "carol/mine", oid, len(secret), token=token)
    assert "upload" in answer["actions"]
    with pytest.raises(HfHubHTTPError):
        carol.hf_hub_download("admin/private-weights", "secret.bin")


# git and git-lfs ---------------------------------------------------------------------------------------------


def _git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_git_lfs_push_and_clone(server: Server, api: HfApi, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    _git("lfs", "install", "--skip-repo", cwd=home, env=env)
    api.create_repo("admin/pushed", private=True)
    remote = f"http://admin:{server.token}@localhost:{server.port}/admin/pushed"
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work, env=env)
    _git("lfs", "track", "*.bin", cwd=work, env=env)
    sha = sparse_file(work / "model.bin", 300 * MB, b"pushed by git lfs\n")
    (work / "README.md").write_text("---\nlicense: mit\n---\n# pushed\n")
    _git("add", ".", cwd=work, env=env)
    _git("commit", "-q", "-m", "lfs push", cwd=work, env=env)
    _git("push", remote, "main", cwd=work, env=env)
    assert object_path(server, sha).stat().st_size == 300 * MB
    assert git_blob(server, "admin/pushed", "model.bin").startswith(b"version https://git-lfs.github.com/spec/v1")

    clone = tmp_path / "clone"
    _git("clone", "-q", remote, str(clone), cwd=tmp_path, env=env)
    assert (clone / "model.bin").stat().st_size == 300 * MB and file_sha256(clone / "model.bin") == sha
    # The Hub API serves what git-lfs pushed.
    entries = {entry.path: entry for entry in api.list_repo_tree("admin/pushed")}
    assert entries["model.bin"].lfs is not None and entries["model.bin"].lfs.sha256 == sha
    # Without the token, the private repo's objects are not handed out.
    anonymous = httpx.post(f"{server.url}/admin/pushed.git/info/lfs/objects/batch",
                           json={"operation": "download", "objects": [{"oid": sha, "size": 300 * MB}]},
                           headers={"Content-Type": "application/vnd.git-lfs+json"})
    assert anonymous.status_code == 401


# Garbage collection ------------------------------------------------------------------------------------------


def test_garbage_collection_keeps_what_any_revision_references(server: Server, api: HfApi) -> None:
    shared, orphan, gone = os.urandom(2 * MB), os.urandom(2 * MB), os.urandom(2 * MB)
    api.create_repo("admin/gc-keep")
    api.create_repo("admin/gc-drop")
    api.upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id="admin/gc-keep")
    api.upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id="admin/gc-drop")
    api.upload_file(path_or_fileobj=gone, path_in_repo="gone.bin", repo_id="admin/gc-drop")
    api.upload_file(path_or_fileobj=gone, path_in_repo="deleted-later.bin", repo_id="admin/gc-keep")
    api.delete_file("deleted-later.bin", repo_id="admin/gc-keep")  # still in gc-keep's history
    oid = hashlib.sha256(orphan).hexdigest()
    put = _batch(server, "admin/gc-keep", oid, len(orphan))["actions"]["upload"]["href"]
    assert httpx.put(put, content=orphan).status_code == 200  # uploaded, never committed
    api.delete_repo("admin/gc-drop")

    platform = Platform.open(load_settings(data_dir=server.data_dir), migrate_schema=False)
    removed = lfs.collect_garbage(platform, grace_s=0)
    assert removed == [oid]
    for kept in (shared, gone):
        assert object_path(server, hashlib.sha256(kept).hexdigest()).exists()
    path = hf_hub_download("admin/gc-keep", "shared.bin", endpoint=server.url, token=server.token,
                           cache_dir=server.data_dir.parent / "gc-cache")
    assert Path(path).read_bytes() == shared
