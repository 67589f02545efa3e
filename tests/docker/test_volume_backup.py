"""Spaces' persistent storage in `spacehub backup` / `restore`: a space's /data (the docker runtime's capped data
disk) is copied into the backup with its owners and modes, and a restore into a new install makes the space's
volume again, of its storage tier, holding the same files, which the app then reads and writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dockerkit import docker, run_spec

from spacehub.backup import backup, restore
from spacehub.errors import InvalidInput
from spacehub.settings import Settings
from spacehub.store.db import Database, migrate
from spacehub.store.models import Space
from spacehub_runner.plugs import Artifact, BuildPlan, Handle
from spacehub_runner.runtimes.docker import STORAGE_GB, DockerRuntime

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

SPACE_ID = 990_070  # within dockerkit.TEST_SPACE_IDS: a container left behind is removed at the session's end


def _install(folder: Path) -> Settings:
    return Settings(data_dir=folder, stop_grace_s=2, storage_small_gb=1)  # type: ignore[call-arg]


def _exec(handle: Handle, script: str) -> str:
    return docker("exec", handle.data["container_id"], "sh", "-c", script).stdout


def _space_with_storage(settings: Settings) -> None:
    url = settings.effective_database_url
    settings.data_dir.mkdir(parents=True)
    migrate(url)
    db = Database(url)
    try:
        with db.session() as session:
            session.add(Space(id=SPACE_ID, owner="admin", name="kept", key="admin/kept", label="admin-kept",
                              sdk="docker", storage="small"))
    finally:
        db.engine.dispose()


def test_a_spaces_data_is_kept_by_backup_and_made_again_by_restore(tmp_path: Path, docker_ready: None,
                                                                 http_image: Artifact) -> None:
    first, second = _install(tmp_path / "first"), _install(tmp_path / "second")
    old, new = DockerRuntime(first), DockerRuntime(second)
    spec = run_spec(SPACE_ID, BuildPlan(recipe="docker"), storage="small")
    handles: list[tuple[DockerRuntime, Handle]] = []
    try:
        _space_with_storage(first)
        app = old.start(spec, http_image)
        handles.append((old, app))
        _exec(app, "mkdir /data/sub && echo kept > /data/sub/note && chmod 640 /data/sub/note"
                   " && ln -s sub/note /data/link")

        summary = backup(first, tmp_path / "backup", volumes=old)
        assert summary.volumes == 1
        copy = tmp_path / "backup" / "volumes" / str(SPACE_ID)
        assert (copy / "sub" / "note").read_text() == "kept\n"
        assert (copy / "sub" / "note").stat().st_uid == 1000 and (copy / "link").is_symlink()
        assert json.loads((tmp_path / "backup" / "manifest.json").read_text())["volumes"] == {str(SPACE_ID): 1}

        # The old install is gone, its volume with it.
        old.stop(app)
        old.remove_volume(old.volume_name(SPACE_ID))
        assert old.volume_files(old.volume_name(SPACE_ID)) is None

        # Without a Docker runtime to put it in, a restore of a backup with /data is refused before it writes.
        third = _install(tmp_path / "third")
        with pytest.raises(InvalidInput, match="persistent storage"):
            restore(third, tmp_path / "backup")
        assert not third.data_dir.exists()

        assert restore(second, tmp_path / "backup", volumes=new).volumes == 1
        name = new.volume_name(SPACE_ID)
        labels = json.loads(docker("volume", "inspect", name).stdout)[0]["Labels"]
        assert labels[STORAGE_GB] == str(second.storage_gb("small"))
        again = new.start(spec, http_image)
        handles.append((new, again))
        assert _exec(again, "cat /data/link").strip() == "kept"
        assert _exec(again, "stat -c %u:%a /data/sub/note").strip() == "1000:640"
        # The app's own, and capped at its tier: a 1 GB filesystem of its own.
        assert _exec(again, "echo more > /data/new && cat /data/new").strip() == "more"
        size_kb = int(_exec(again, "df -k /data | tail -1").split()[1])
        assert 0.8 * 1024**2 < size_kb <= 1024**2, size_kb
    finally:
        for runtime, handle in handles:
            runtime.stop(handle)
        for runtime in (old, new):
            runtime.remove_volume(runtime.volume_name(SPACE_ID))
