"""`spacehub backup DEST` and `spacehub restore SRC`: what must be kept, taken while the platform serves.

Kept: the database (every table, as JSON lines, so a backup of SQLite restores into PostgreSQL and back), the git
repositories, the LFS object store when there is one, the two keys (the signing secret of sessions and the key
that seals space secrets), and each space's persistent storage (its /data: the Docker runtime's volumes, given as
a `VolumeStore`), which no build can make again. Not kept, because a build makes them again: environments,
images, app copies, checkouts, caches, logs, Redis (it only dispatches; SQL is the truth).

Consistency while writes go on: the database is read in one snapshot first (SQLite: its online backup API into a
private copy, read from there; PostgreSQL: one REPEATABLE READ transaction), then each repository is copied under
its writer lock, references before objects. Git objects are only ever added, so every commit the database or a
reference names is in the copy; a repository may be a push ahead of the database, which the next build takes up.
A space's /data is copied last, file by file, as its app goes on writing (what an app writes during the copy may
or may not be in it, as with any copy of a live disk; an app that needs more quiesces itself).

A restore goes into an empty install (no users, no repositories) and brings the database to the backup's schema
revision, loads it, then migrates to this version's head. Spaces come back without any app (the old handles
name processes and containers of another machine): each space that had a revision is queued for a build again,
which the supervisor dispatches once the platform runs (`recover_lost_builds`), so every space rebuilds and serves.
Each space's /data comes back first, as a new volume of its storage tier holding the files, owners and modes kept.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, DateTime, LargeBinary, MetaData, Table, create_engine, delete, insert, select, text
from sqlalchemy.engine import make_url

from spacehub import __version__
from spacehub.errors import Conflict, InvalidInput
from spacehub.filecopy import copy_tree
from spacehub.settings import Settings
from spacehub.store.db import Database, migrate

FORMAT = 1
MANIFEST = "manifest.json"
TABLES_DIR = "database"
REPOS_DIR = "repos"
LFS_DIR = "lfs"
VOLUMES_DIR = "volumes"  # one folder per space id: the files of its /data
SIGNING_KEY = "secret.key"  # the session signing secret (spacehub.secret)
SEALING_KEY = "secrets.key"  # the key that seals space secrets (spacehub.crypto), wherever it is configured
REPO_LOCK = "spacehub.lock"  # spacehub.repos' writer lock, held while a repository is copied
# Tables of one machine's running apps: meaningless on another, emptied by a restore.
RUNTIME_TABLES = ("gpu_allocations", "retired_apps", "deployments")
BATCH = 500


@runtime_checkable
class VolumeStore(Protocol):
    """Where a runtime keeps spaces' persistent storage (spacehub_runner's docker runtime), as backups use it."""

    def list_volumes(self) -> dict[str, int]: ...  # name -> space id, every volume of this platform

    def volume_name(self, space_id: int) -> str: ...

    def volume_files(self, name: str) -> Path | None: ...  # the folder holding its files here, or None

    def restore_volume(self, name: str, space_id: int, storage_gb: int, source: Path) -> None: ...


@dataclass(frozen=True)
class Summary:
    folder: Path
    tables: dict[str, int]
    repositories: int
    files: list[str]
    revision: str | None
    volumes: int = 0  # spaces whose /data was kept (or brought back)


# -- backup -------------------------------------------------------------------------------------------------------


def backup(settings: Settings, dest: Path, volumes: VolumeStore | None = None) -> Summary:
    """Write a backup into `dest` (made here; it must not exist yet), whole or not at all. `volumes`: the
    runtime's persistent storage, whose files are kept for every space of the database's snapshot."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise Conflict(f"backup destination {dest} exists and is not empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        tables, revision = _dump_database(settings.effective_database_url, staging / TABLES_DIR)
        repositories = _copy_repositories(settings.repos_dir, staging / REPOS_DIR)
        files = []
        if settings.lfs_dir.is_dir():
            shutil.copytree(settings.lfs_dir, staging / LFS_DIR, ignore=_temporary, symlinks=True)
            files.append(LFS_DIR)
        for name, path in _keys(settings).items():
            if path.is_file():
                shutil.copy2(path, staging / name)
                files.append(name)
        kept = _copy_volumes(volumes, _space_ids(staging / TABLES_DIR), staging / VOLUMES_DIR) if volumes else {}
        manifest = {"format": FORMAT, "spacehub": __version__, "created_at": _now().isoformat(),
                    "revision": revision, "tables": tables, "repositories": repositories, "files": files,
                    "volumes": kept, "database": make_url(settings.effective_database_url).get_backend_name()}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(staging, 0o700)  # keys and token hashes inside
        if dest.exists():
            dest.rmdir()
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Summary(dest, tables, repositories, files, revision, len(kept))


def _space_ids(tables: Path) -> set[int]:
    source = tables / "spaces.jsonl"
    if not source.exists():
        return set()
    with open(source) as lines:
        return {int(json.loads(line)["id"]) for line in lines}


def _copy_volumes(volumes: VolumeStore, spaces: set[int], dest: Path) -> dict[str, int]:
    """Each space's /data into `dest/<space id>/`; returns space id -> files copied. Volumes of spaces the
    snapshot does not hold (deleted ones, removed soon) are not kept."""
    kept = {}
    for name, space_id in sorted(volumes.list_volumes().items(), key=lambda item: item[1]):
        if space_id not in spaces:
            continue
        folder = volumes.volume_files(name)
        if folder is None:
            raise Conflict(f"cannot read the persistent storage of space {space_id} (volume {name}) from here: "
                           "run the backup where the platform's Docker runtime runs")
        kept[str(space_id)] = copy_tree(folder, dest / str(space_id))
    return kept


def _keys(settings: Settings) -> dict[str, Path]:
    from spacehub import crypto
    from spacehub.secret import secret_path

    return {SIGNING_KEY: secret_path(settings), SEALING_KEY: crypto.key_file(settings)}


def _dump_database(url: str, folder: Path) -> tuple[dict[str, int], str | None]:
    folder.mkdir(parents=True)
    with _snapshot(url) as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        meta = MetaData()
        meta.reflect(conn)
        counts = {}
        for table in meta.sorted_tables:
            if table.name == "alembic_version":
                continue
            rows = 0
            with open(folder / f"{table.name}.jsonl", "w") as out:
                for row in conn.execute(select(table)).mappings():
                    out.write(json.dumps(dict(row), default=_encode) + "\n")
                    rows += 1
            counts[table.name] = rows
    return counts, revision


@contextlib.contextmanager
def _snapshot(url: str) -> Iterator[Connection]:
    """One connection that sees the whole database as of one moment."""
    if make_url(url).get_backend_name() == "sqlite":
        source = make_url(url).database
        if not source or not Path(source).exists():
            raise InvalidInput(f"no SQLite database at {source}")
        with tempfile.TemporaryDirectory(prefix="spacehub-backup-") as tmp:
            copy = Path(tmp) / "snapshot.db"
            # SQLite's online backup API: a consistent copy while other processes go on writing.
            with contextlib.closing(sqlite3.connect(source, timeout=30)) as live, \
                    contextlib.closing(sqlite3.connect(copy)) as target:
                live.backup(target)
            engine = create_engine(f"sqlite:///{copy}")
            try:
                with engine.connect() as conn:
                    yield conn
            finally:
                engine.dispose()
        return
    engine = create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            yield conn
    finally:
        engine.dispose()


def _copy_repositories(root: Path, dest: Path) -> int:
    dest.mkdir(parents=True)
    count = 0
    if not root.is_dir():
        return 0
    for head in sorted(root.rglob("HEAD")):
        git_dir = head.parent
        relative = git_dir.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not (git_dir / "objects").is_dir():
            continue  # the trash and repositories being created
        with _repo_locked(git_dir):
            target = dest / relative
            target.mkdir(parents=True)
            # References first, then objects: objects are only added, so each reference copied finds its commit.
            for name in ("HEAD", "packed-refs", "config"):
                if (git_dir / name).is_file():
                    shutil.copy2(git_dir / name, target / name)
            for name in ("refs", "info"):
                if (git_dir / name).is_dir():
                    shutil.copytree(git_dir / name, target / name, ignore=_temporary)
            shutil.copytree(git_dir / "objects", target / "objects", ignore=_temporary)
        count += 1
    return count


@contextlib.contextmanager
def _repo_locked(git_dir: Path) -> Iterator[None]:
    fd = os.open(git_dir / REPO_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _temporary(_folder: str, names: list[str]) -> set[str]:
    # Half-written objects (git's tmp_obj_*, incoming quarantines) and lock files are never part of a backup.
    return {n for n in names if n.startswith(("tmp_", "incoming-", ".tmp")) or n.endswith(".lock") or n == REPO_LOCK}


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot back up a value of type {type(value).__name__}")


def _now() -> datetime:
    return datetime.now(UTC)


# -- restore ------------------------------------------------------------------------------------------------------


def restore(settings: Settings, src: Path, volumes: VolumeStore | None = None) -> Summary:
    """Bring a backup back into this (empty) install; every space is then queued for a build. `volumes`: where
    spaces' persistent storage goes (required when the backup holds some)."""
    manifest = _read_manifest(src)
    revision = manifest["revision"]
    url = settings.effective_database_url
    saved = {int(space_id) for space_id in manifest.get("volumes") or {}}
    if saved and volumes is None:
        raise InvalidInput(f"{src} holds the persistent storage (/data) of {len(saved)} space(s), and this install "
                           "has no Docker runtime to put it in: restore with SPACEHUB_RUNTIME=docker")
    for path in (settings.data_dir, settings.repos_dir, settings.run_dir, settings.logs_dir):
        path.mkdir(parents=True, exist_ok=True)
    _require_empty(settings, url)
    if volumes is not None and volumes.list_volumes():
        raise Conflict("restore needs an empty install: this platform already has persistent storage volumes")
    from spacehub import crypto

    # The keys first: migrating past the backup's revision may seal secrets with the sealing key.
    files = []
    for name, path in _keys(settings).items():
        if (src / name).is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, path)
            os.chmod(path, 0o600)
            files.append(name)
    migrate(url, revision or "head")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = _load_tables(conn, src / TABLES_DIR)
            _reset_sequences(conn)
    finally:
        engine.dispose()
    migrate(url, secrets_key_file=crypto.key_file(settings))
    if volumes is not None and saved:
        _restore_volumes(settings, url, volumes, saved, src / VOLUMES_DIR)
    _queue_rebuilds(settings, url, datetime.fromisoformat(manifest["created_at"]))
    repositories = 0
    if (src / REPOS_DIR).is_dir():
        for entry in sorted((src / REPOS_DIR).iterdir()):
            shutil.copytree(entry, settings.repos_dir / entry.name, dirs_exist_ok=True)
        repositories = int(manifest.get("repositories", 0))
    if (src / LFS_DIR).is_dir():
        shutil.copytree(src / LFS_DIR, settings.lfs_dir, dirs_exist_ok=True)
        files.append(LFS_DIR)
    return Summary(src, tables, repositories, files, revision, len(saved))


def _restore_volumes(settings: Settings, url: str, volumes: VolumeStore, saved: set[int], folder: Path) -> None:
    """Each kept /data as a new volume of its space's storage tier (before any build: the first start finds it)."""
    from spacehub.store.models import Space

    db = Database(url)
    try:
        with db.session() as session:
            tiers = {space.id: space.storage for space in session.query(Space).filter(Space.id.in_(saved))}
    finally:
        db.engine.dispose()
    for space_id in sorted(saved):
        if space_id not in tiers:
            continue  # cannot happen: the backup keeps only the volumes of the spaces it holds
        tier = tiers[space_id]
        size_gb = settings.storage_gb(tier) if tier else 0
        volumes.restore_volume(volumes.volume_name(space_id), space_id, size_gb, folder / str(space_id))


def _read_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{src} is not a spacehub backup (no readable {MANIFEST}: {exc})") from None
    if manifest.get("format") != FORMAT:
        raise InvalidInput(f"{src} is a backup of format {manifest.get('format')!r}; this version reads {FORMAT}")
    return dict(manifest)


def _require_empty(settings: Settings, url: str) -> None:
    if any(settings.repos_dir.iterdir()):
        raise Conflict(f"restore needs an empty install: {settings.repos_dir} holds repositories")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            meta = MetaData()
            meta.reflect(conn, only=lambda name, _meta: name in ("users", "spaces"))
            for table in meta.tables.values():
                if conn.execute(select(table).limit(1)).first() is not None:
                    raise Conflict(f"restore needs an empty install: the database already has {table.name}")
    finally:
        engine.dispose()


# Tables whose migration writes their rows (the database's id): the backup's rows replace those, so a restored
# install is the same installation to the commands that check it (spacehub.cli.admin).
SEEDED = frozenset({"installation"})


def _load_tables(conn: Connection, folder: Path) -> dict[str, int]:
    meta = MetaData()
    meta.reflect(conn)
    counts = {}
    for table in meta.sorted_tables:
        source = folder / f"{table.name}.jsonl"
        if table.name == "alembic_version" or not source.exists():
            continue
        counts[table.name] = 0
        if table.name in SEEDED:
            conn.execute(delete(table))
        batch: list[dict[str, Any]] = []
        with open(source) as lines:
            for line in lines:
                batch.append(_decode_row(table, json.loads(line)))
                if len(batch) >= BATCH:
                    conn.execute(insert(table), batch)
                    counts[table.name] += len(batch)
                    batch = []
        if batch:
            conn.execute(insert(table), batch)
            counts[table.name] += len(batch)
    return counts


def _decode_row(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    decoded = {}
    for name, value in row.items():
        column = table.columns.get(name)
        if column is None:
            continue  # a column this schema revision does not have (cannot happen at the backup's revision)
        if value is not None and isinstance(column.type, DateTime):
            value = datetime.fromisoformat(value)
        elif value is not None and isinstance(column.type, LargeBinary):
            value = base64.b64decode(value)
        decoded[name] = value
    return decoded


def _reset_sequences(conn: Connection) -> None:
    """PostgreSQL: rows came with their ids, so each id sequence must move past them."""
    if conn.dialect.name != "postgresql":
        return
    meta = MetaData()
    meta.reflect(conn)
    for table in meta.sorted_tables:
        if "id" not in table.columns:
            continue
        sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}).scalar()
        if sequence:
            conn.execute(text(f'SELECT setval(:s, COALESCE((SELECT MAX(id) FROM "{table.name}"), 0) + 1, false)'),
                         {"s": sequence})


def _queue_rebuilds(settings: Settings, url: str, taken_at: datetime) -> None:
    """Clear what belonged to the old machine's apps and queue each space's revision for a build.

    The build rows get a job id that no queue holds: the supervisor finds them lost and enqueues them (SQL is the
    truth, Redis only dispatches), so nothing here needs Redis.
    """
    from spacehub.stages import Stage
    from spacehub.store.models import Build, BuildStatus, Space
    from spacehub.transitions import transition

    created = taken_at.astimezone(UTC).replace(tzinfo=None)
    db = Database(url)
    try:
        with db.session() as session:
            for name in RUNTIME_TABLES:
                if db.engine.dialect.has_table(session.connection(), name):
                    session.execute(text(f'DELETE FROM "{name}"'))
            for active in session.query(Build).filter(Build.status.in_(BuildStatus.ACTIVE)):
                active.status, active.finished_at = BuildStatus.SUPERSEDED, created
            for space in session.query(Space).filter(Space.repo_type == "space"):
                space.handle, space.running_sha, space.restarts = None, None, 0
                space.restart_at = space.crashed_at = None
                if space.desired_sha is None or space.stage in (Stage.PAUSED, Stage.STOPPED):
                    continue
                build = session.query(Build).filter_by(space_id=space.id, sha=space.desired_sha).one_or_none()
                if build is None:
                    build = Build(space_id=space.id, sha=space.desired_sha)
                    session.add(build)
                build.status, build.error, build.artifact = BuildStatus.QUEUED, "", None
                build.created_at, build.started_at, build.finished_at = created, None, None
                build.job_id = f"restored-{space.id}"
                transition(space, Stage.BUILDING, "restored from a backup: queued for build", by="restore")
    finally:
        db.engine.dispose()
