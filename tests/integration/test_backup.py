"""`spacehub backup` taken while uploads go on, `spacehub restore` into a wiped install: users and their tokens,
spaces with their secrets, repositories; every space rebuilds and serves again (on SQLite, and on PostgreSQL in
the `--db postgres` pass)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download

from support.secretapp import write_space
from support.server import Server


def _serves_secret(server: Server, label: str) -> str:
    return server.space_get(label, "/").text


@pytest.mark.timeout(900)  # two platforms, two builds, and a restored build waits for the lost-job grace
def test_backup_under_write_load_then_restore_into_a_wiped_install(tmp_path: Path) -> None:
    first = Server(tmp_path / "first")
    first.start()
    installation = first.api.get("/health").json()["installation"]
    assert len(installation) == 32, installation
    try:
        first.cli("users", "create", "bob")
        bob_token = first.cli("token", "create", "--user", "bob").stdout.strip().splitlines()[-1]
        admin = HfApi(endpoint=first.url, token=first.token)
        first.cli("push", str(write_space(tmp_path / "kept")), "admin/kept", "--no-follow")
        admin.add_space_secret("admin/kept", "GREETING", "hello from before")
        first.wait_stage("admin/kept", {"RUNNING"})
        bob = HfApi(endpoint=first.url, token=bob_token)
        bob.create_repo("bob/busy", repo_type="space", space_sdk="static")

        # Write load: bob keeps committing while the backup is taken.
        stop = threading.Event()
        commits: list[str] = []
        errors: list[BaseException] = []

        def keep_writing() -> None:
            n = 0
            try:
                while not stop.is_set():
                    info = bob.upload_file(path_or_fileobj=f"<p>version {n}</p>".encode(), path_in_repo="index.html",
                                           repo_id="bob/busy", repo_type="space", commit_message=f"v{n}")
                    commits.append(info.oid)
                    n += 1
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            while len(commits) < 2 and not errors:
                stop.wait(0.1)
            summary = first.cli("backup", str(tmp_path / "backup")).stdout
        finally:
            stop.set()
            writer.join(60)
        assert not errors, errors
        assert len(commits) >= 3, commits
        assert "2 repositories" in summary, summary
    finally:
        first.stop()
        first.kill_apps()

    backup = tmp_path / "backup"
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["tables"]["users"] == 2 and manifest["tables"]["spaces"] == 2
    assert (backup / "secret.key").is_file()
    # Only what must be kept: no environments, app copies, logs, caches or Redis data.
    assert sorted(p.name for p in backup.iterdir()) == sorted(["manifest.json", "database", "repos",
                                                               *manifest["files"]])
    assert not any(part in {"envs", "apps", "logs", "cache", "redis"} for p in backup.rglob("*") for part in p.parts)

    # The old install is gone; a new one (its own data dir, its own database) gets the backup.
    shutil.rmtree(tmp_path / "first")
    second = Server(tmp_path / "second")
    restored = second.cli("restore", str(backup)).stdout
    assert "Restored" in restored
    refused = second.cli("restore", str(backup), check=False)
    assert refused.returncode != 0 and "empty install" in refused.stderr
    second.start()
    try:
        # The same installation (the database's id came back), so admin commands on it act on this platform.
        assert second.api.get("/health").json()["installation"] == installation
        # Users and their tokens (hashes restored: the same secret still authenticates).
        assert HfApi(endpoint=second.url, token=bob_token).whoami()["name"] == "bob"
        assert httpx.get(f"{second.url}/api/whoami-v2", headers={"Authorization": "Bearer sh_not_a_real_token_000"},
                         timeout=30).status_code == 401
        # Repositories: bob's space holds a commit at least as new as the database's record of it.
        busy = HfApi(endpoint=second.url, token=bob_token).space_info("bob/busy")
        assert busy.sha in commits
        page = hf_hub_download("bob/busy", "index.html", repo_type="space", endpoint=second.url, token=bob_token,
                               cache_dir=tmp_path / "cache")
        assert Path(page).read_text().startswith("<p>version ")
        # Every space rebuilds and serves, its secret intact.
        second.wait_stage("admin/kept", {"RUNNING"}, timeout=300)
        assert _serves_secret(second, "admin-kept") == "secret=hello from before"
        second.wait_stage("bob/busy", {"RUNNING"}, timeout=300)
        assert second.space_get("bob-busy", "/").text.startswith("<p>version ")
    finally:
        second.stop()
        second.kill_apps()


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    server = Server(tmp_path / "data")
    result = server.cli("restore", str(tmp_path / "junk"), check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path / 'junk'} is not a spacehub backup (no "
                                                  f"readable manifest.json: [Errno 2] No such file or directory: "
                                                  f"'{tmp_path / 'junk' / 'manifest.json'}')"]


def test_backup_refuses_a_destination_in_use(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "something").write_text("mine")
    server = Server(tmp_path / "data")
    result = server.cli("backup", str(dest), check=False)
    assert result.returncode != 0 and "not empty" in result.stderr
    assert (dest / "something").read_text() == "mine"
