"""Garbage collection of what no space needs, against a real (SQLite) store and real folders."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from spacehub.context import Platform
from spacehub.settings import Settings
from spacehub.stages import Stage
from spacehub.store.models import Build, BuildStatus, RetiredApp, Space
from spacehub_runner import gc

DAY = 24 * 3600.0


def folder(path: Path, age_s: float = 0.0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "marker").write_text("x")
    if age_s:
        old = time.time() - age_s
        os.utime(path, (old, old))
    return path


def test_only_what_no_space_needs_is_collected_once_unused_for_the_keep_time(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", gc_keep_s=DAY)  # type: ignore[call-arg]
    platform = Platform.open(settings)
    envs, apps = settings.envs_dir, settings.apps_dir
    running_env, running_app = folder(envs / "env-running", 30 * DAY), folder(apps / "app-running", 30 * DAY)
    wanted_app = folder(apps / "app-wanted", 30 * DAY)  # a newer revision's build output, not started yet
    draining_app = folder(apps / "app-draining", 30 * DAY)  # the old revision, finishing its requests
    old_env, old_app = folder(envs / "env-old", 30 * DAY), folder(apps / "app-old", 30 * DAY)
    recent_env = folder(envs / "env-recent", 3600)  # unused, but not for long enough
    locked_env = folder(envs / "env-locked", 30 * DAY)  # a build holds its lock: maybe reusing it right now
    half_copied = folder(apps / ".partial-app-x", 30 * DAY)
    gone_space_logs = folder(settings.logs_dir / "99")

    with platform.db.session() as session:
        space = Space(owner="admin", name="s", key="admin/s", label="admin-s", stage=Stage.RUNNING_BUILDING,
                      desired_sha="b" * 40, running_sha="a" * 40,
                      handle={"runtime": "process", "target": "127.0.0.1:1", "data": {"cwd": str(running_app)}})
        session.add(space)
        session.flush()
        session.add(Build(space_id=space.id, sha="a" * 40, status=BuildStatus.SUCCEEDED,
                          artifact={"kind": "process-env", "key": "k", "ref": str(running_app),
                                    "env_path": str(running_env), "extra": {}}))
        session.add(Build(space_id=space.id, sha="b" * 40, status=BuildStatus.RUNNING,
                          artifact={"kind": "process-env", "key": "k2", "ref": str(wanted_app),
                                    "env_path": str(running_env), "extra": {}}))
        session.add(Build(space_id=space.id, sha="c" * 40, status=BuildStatus.SUCCEEDED,
                          artifact={"kind": "process-env", "key": "k3", "ref": str(old_app),
                                    "env_path": str(old_env), "extra": {}}))
        session.add(RetiredApp(space_id=space.id, handle={"runtime": "process", "target": "127.0.0.1:2",
                                                          "data": {"cwd": str(draining_app)}}))
        session.flush()
        done_build, running_build = (b.id for b in session.query(Build).order_by(Build.id).limit(2))
    stale_checkout = folder(settings.data_dir / "builds" / str(done_build))  # left by a worker that died
    live_checkout = folder(settings.data_dir / "builds" / str(running_build))

    with (envs / "env-locked.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        removed = set(gc.collect(platform))

    assert {str(old_env), str(old_app), str(half_copied), str(stale_checkout), str(gone_space_logs)} <= removed
    for gone in (old_env, old_app, half_copied, stale_checkout, gone_space_logs):
        assert not gone.exists()
    for kept in (running_env, running_app, wanted_app, draining_app, recent_env, locked_env, live_checkout):
        assert kept.is_dir(), kept

    # Once the lock is free, the unused one goes too; what is needed stays however old it is.
    removed = set(gc.collect(platform))
    assert str(locked_env) in removed and not locked_env.exists()
    assert running_env.is_dir() and running_app.is_dir()
