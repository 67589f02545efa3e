"""Resource hygiene: collect what no space needs any more (the supervisor runs `collect` every
SPACEHUB_GC_INTERVAL_S).

Needed is: the build output (environment, app copy, image) of every space's wanted and running revision, and
whatever a running or draining app uses. Everything else of the kinds below is collected once it has been unused
for SPACEHUB_GC_KEEP_S (so a rollback or a re-push soon after reuses it):

  - process builder: `envs/<hash>` virtualenvs and `apps/<key>` app copies (and half-copied `.partial-*` ones),
    each only while nobody holds its build lock;
  - docker: this platform's app images (`SPACEHUB_DOCKER_APP_REPO`, and with SPACEHUB_REGISTRY the images pulled
    from there by digest; never the base or SDK images, which are shared by every build, and never an image a
    container still uses) and BuildKit's build cache;
  - checkouts of builds that are no longer running (`builds/<id>`: left behind by a worker that died) and
    abandoned upload staging folders (`tmp/`);
  - run logs of apps that are gone (`logs/<space id>/space-*.log`) and the folders of deleted spaces.

"Unused for" is measured from the last collection that saw a thing in use (a small ledger under `gc/`), or from
its modification time if no collection ever did.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from spacehub import lfs
from spacehub.context import Platform
from spacehub.settings import Settings
from spacehub.store.models import Build, BuildStatus, RetiredApp, Space
from spacehub_runner import backends

log = logging.getLogger("spacehub.gc")


@dataclass
class Needed:
    paths: set[str] = field(default_factory=set)  # resolved folders and files in use
    images: set[str] = field(default_factory=set)  # docker image refs in use
    space_ids: set[int] = field(default_factory=set)  # spaces that exist
    active_builds: set[int] = field(default_factory=set)  # build ids queued or running


def needed(platform: Platform) -> Needed:
    result = Needed()
    with platform.db.session() as session:
        spaces = list(session.scalars(select(Space)))
        result.space_ids = {space.id for space in spaces}
        handles: list[dict[str, Any]] = [space.handle for space in spaces if space.handle]
        handles += [row.handle for row in session.scalars(select(RetiredApp))]
        for build in session.scalars(select(Build)):
            if build.status in BuildStatus.ACTIVE:
                result.active_builds.add(build.id)
        wanted = {(space.id, sha) for space in spaces for sha in (space.desired_sha, space.running_sha) if sha}
        for build in session.scalars(select(Build).where(Build.artifact.is_not(None))):
            if (build.space_id, build.sha) in wanted and build.artifact:
                _add_artifact(result, build.artifact)
    for handle in handles:
        data = handle.get("data") or {}
        for key in ("cwd", "env_path", "log_file", "exit_file"):
            if data.get(key):
                result.paths.add(_resolved(data[key]))
        if data.get("image"):
            result.images.add(str(data["image"]))
    return result


def _add_artifact(result: Needed, artifact: dict[str, Any]) -> None:
    kind = artifact.get("kind")
    if kind == "docker-image":
        result.images.add(str(artifact.get("ref")))
        tag = (artifact.get("extra") or {}).get("tag")
        if tag:  # pushed to SPACEHUB_REGISTRY: the ref is the digest name, the local content tag is this one
            result.images.add(str(tag))
        return
    for key in ("ref", "env_path"):
        if artifact.get(key):
            result.paths.add(_resolved(artifact[key]))


def _resolved(path: str) -> str:
    return str(Path(path).resolve())


class Ledger:
    """When each thing was last seen in use, kept between collections (and supervisor restarts)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.seen: dict[str, float] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.seen = {}

    def last_used(self, key: str, fallback: float) -> float:
        return max(self.seen.get(key, 0.0), fallback)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.seen))
        os.replace(tmp, self.path)


def collect(platform: Platform, now: float | None = None) -> list[str]:
    """One collection; returns what was removed (for the log and tests)."""
    settings = platform.settings
    now = time.time() if now is None else now
    use = needed(platform)
    ledger = Ledger(settings.data_dir / "gc" / "last-used.json")
    removed: list[str] = []
    keep = settings.gc_keep_s

    def expired(key: str, mtime: float) -> bool:
        return now - ledger.last_used(key, mtime) >= keep

    # Environments and app copies of the process builder
    for folder in (settings.envs_dir, settings.apps_dir):
        for entry in _dirs(folder):
            key = _resolved(str(entry))
            if key in use.paths:
                ledger.seen[key] = now
                continue
            name = entry.name.removeprefix(".partial-")
            if expired(key, _mtime(entry)) and _remove_unlocked(entry, folder / f"{name}.lock"):
                ledger.seen.pop(key, None)
                removed.append(str(entry))

    # Checkouts of builds that no longer run, abandoned upload staging folders
    for entry in _dirs(settings.data_dir / "builds"):
        if not entry.name.isdigit() or int(entry.name) not in use.active_builds:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    for entry in _dirs(settings.data_dir / "tmp"):
        if now - _mtime(entry) >= keep:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))

    # Run logs of apps that are gone; folders of deleted spaces
    for entry in _dirs(settings.logs_dir):
        if entry.name.isdigit() and int(entry.name) not in use.space_ids:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
            continue
        for file in entry.glob("space-*"):
            if _resolved(str(file)) not in use.paths and now - _mtime(file) >= keep:
                file.unlink(missing_ok=True)
                removed.append(str(file))
    for entry in _dirs(settings.data_dir / "spaces"):
        if entry.name.isdigit() and int(entry.name) not in use.space_ids:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))

    if backends.runtime_name(settings) == "docker":
        removed += _collect_docker(settings, use, ledger, now)
    # LFS objects no branch or tag of any repo points to any more
    removed += [f"lfs:{oid}" for oid in lfs.collect_garbage(platform, settings.lfs_gc_grace_s)]

    ledger.seen = {key: seen for key, seen in ledger.seen.items() if now - seen < 10 * keep + 86400}
    ledger.save()
    if removed:
        log.info("collected %d unused things: %s", len(removed), ", ".join(removed[:20]))
    return removed


def _collect_docker(settings: Settings, use: Needed, ledger: Ledger, now: float) -> list[str]:
    import docker
    from docker.errors import APIError, DockerException

    from spacehub_runner import imageregistry
    from spacehub_runner.dockeropts import DockerOptions

    opts = DockerOptions.from_settings(settings)
    removed: list[str] = []
    # Images pulled from the registry by digest carry no tag, only their digest name, in the registry's repo.
    repos = [opts.app_repo]
    if imageregistry.enabled(settings):
        repos.append(imageregistry.remote_repo(settings, opts.app_repo))
    try:
        client = docker.from_env(version="auto")
        images = list({image.id: image for repo in repos for image in client.images.list(name=repo)}.values())
    except DockerException as exc:
        log.warning("docker GC skipped: %s", exc)
        return removed
    for image in images:
        tags = image_names(image.tags, image.attrs.get("RepoDigests") or [], repos)
        if not tags:
            continue
        if any(tag in use.images for tag in tags) or image.id in use.images:
            for tag in tags:
                ledger.seen[f"image:{tag}"] = now
            continue
        created = _docker_time(str(image.attrs.get("Created", "")))
        if all(now - ledger.last_used(f"image:{tag}", created) >= settings.gc_keep_s for tag in tags):
            for tag in tags:
                try:
                    client.images.remove(tag, noprune=False)  # refused while any container uses it
                    removed.append(f"image {tag}")
                    ledger.seen.pop(f"image:{tag}", None)
                except APIError as exc:
                    log.info("image %s kept: %s", tag, exc)
    # BuildKit's cache: entries unused for the keep time (the client speaks BuildKit; see dockerbuild).
    hours = max(1, int(settings.gc_keep_s // 3600))
    try:
        subprocess.run([opts.cli, "builder", "prune", "--force", "--filter", f"until={hours}h"],
                       env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True, timeout=600, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("build cache not pruned: %s", exc)
    return removed


def image_names(tags: list[str], repo_digests: list[str], repos: list[str]) -> list[str]:
    """The names of an image that belong to the platform: its tags in `repos`, then its digest names there
    (`<registry>/<repo>@sha256:...`, how runtimes name a pushed image and how an engine that pulled it knows it)."""
    found = [tag for tag in tags if any(tag.startswith(f"{repo}:") for repo in repos)]
    found += [ref for ref in repo_digests if any(ref.startswith(f"{repo}@") for repo in repos)]
    return found


def _docker_time(created: str) -> float:
    """Docker's RFC 3339 UTC time as epoch seconds (0 when unknown)."""
    from datetime import UTC, datetime

    try:
        return datetime.fromisoformat(created[:19]).replace(tzinfo=UTC).timestamp() if created else 0.0
    except ValueError:
        return 0.0


def _dirs(folder: Path) -> Iterator[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            yield entry


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _remove_unlocked(entry: Path, lock_path: Path) -> bool:
    """Remove `entry` unless a build holds its lock right now (it may be filling or reusing it)."""
    if not lock_path.exists():
        shutil.rmtree(entry, ignore_errors=True)
        return True
    with lock_path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            shutil.rmtree(entry, ignore_errors=True)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
    return True
