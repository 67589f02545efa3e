"""One bare git repository per space, driven through the real `git` CLI.

Layout: `root/<owner>/<name>.git`; models and datasets, whose keys carry a `models/` or `datasets/` prefix,
live at `root/models/<owner>/<name>.git` and `root/datasets/<owner>/<name>.git`.

Writes never touch a working tree. Blobs are hashed straight from the caller's files with `hash-object
--no-filters`, so an uploaded `.gitattributes` cannot rewrite what is stored; a throwaway index
(GIT_INDEX_FILE) turns (path, mode, blob) entries into a tree, which therefore hashes the same for the same
files every time; `commit-tree` makes the commit and `update-ref <new> <old>` moves the branch only if nobody
moved it meanwhile. A per-repo flock serialises writers in this process and in others; the compare-and-swap
of update-ref also covers writers that take no lock (a `git push`).

git runs with a clean environment: no system or global config, a HOME with nothing in it, hooks and fsmonitor
off, replace refs ignored, literal pathspecs, and a fixed committer, `spacehub <spacehub@localhost>`.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

from spacehub.archives import check_relpath
from spacehub.errors import (
    Conflict,
    EntryNotFound,
    InvalidInput,
    RepoNotFound,
    RevisionNotFound,
    UnsafeUpload,
)

COMMITTER_NAME = "spacehub"
COMMITTER_EMAIL = "spacehub@localhost"
DEFAULT_BRANCH = "main"
ZERO_SHA = "0" * 40

_REPO_KIND_PREFIXES = ("models", "datasets")  # spaces have none
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REF_NAME = re.compile(r"[A-Za-z0-9._/-]+")
_HEX_SHA = re.compile(r"[0-9a-f]{7,40}")
_LOCK_FILE = "spacehub.lock"
_CHUNK_BYTES = 64 * 1024
_MODE_FILE, _MODE_EXECUTABLE, _MODE_SUBMODULE = "100644", "100755", "160000"
# git archive obeys export-subst/export-ignore in the tree's own .gitattributes; info/attributes overrides it.
_NEUTRAL_ATTRIBUTES = "* -export-subst -export-ignore\n"
_GIT_OPTIONS = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.filemode=true",
    "-c", "core.autocrlf=false",
    "-c", "gc.auto=0",
)


@dataclass(frozen=True)
class CommitResult:
    sha: str
    changed: bool  # False when the new tree equals the parent's: no commit was made and `sha` is the parent


@dataclass(frozen=True)
class TreeEntry:
    path: str
    size: int
    blob_id: str  # the tree's id for a directory
    kind: str  # "file" | "directory"


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    message: str
    author: str
    timestamp: int
    parents: tuple[str, ...]


class GitCommandFailed(RuntimeError):
    """git failed where it should not have: a broken repository or installation, not a caller's mistake."""

    def __init__(self, args: list[str], returncode: int, stderr: bytes) -> None:
        detail = stderr.decode("utf-8", "replace").strip()
        super().__init__(f"git {' '.join(args)} exited with {returncode}: {detail}")
        self.returncode = returncode
        self.stderr = detail


class _IndexEntry(NamedTuple):
    mode: str
    oid: str


class _SourceFile(NamedTuple):
    path: str  # in the repository
    mode: str
    location: Path  # on disk


class _ObjectInfo(NamedTuple):
    oid: str
    kind: str
    size: int


class RepoStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Never created: git looks for ~/.gitconfig and ~/.config/git/* here and finds nothing.
        home = self.root / ".home"
        self._env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_NO_REPLACE_OBJECTS": "1",  # a pushed refs/replace/* must not change what a sha reads as
            "GIT_LITERAL_PATHSPECS": "1",
            "LC_ALL": "C",
            "GIT_COMMITTER_NAME": COMMITTER_NAME,
            "GIT_COMMITTER_EMAIL": COMMITTER_EMAIL,
        }

    # Repositories -------------------------------------------------------------------------------------------

    def create(self, key: str) -> None:
        """Create the bare repository (default branch `main`); nothing happens if it exists."""
        path = self._path_of(key)
        if _is_repository(path):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Built aside and renamed into place, so no reader ever sees half a repository.
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".init", dir=path.parent))
        try:
            self._run(["init", "--bare", "--quiet", f"--initial-branch={DEFAULT_BRANCH}", "--template=",
                       str(staging)], cwd=path.parent)
            (staging / "info").mkdir(exist_ok=True)
            (staging / "info" / "attributes").write_text(_NEUTRAL_ATTRIBUTES)
            os.rename(staging, path)
        except OSError:
            if not _is_repository(path):  # else a concurrent create won the race, which is just as good
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def exists(self, key: str) -> bool:
        return _is_repository(self._path_of(key))

    def git_dir(self, key: str) -> Path:
        """The bare repository's folder, for git's own server programs (smart HTTP); RepoNotFound if none."""
        return self._existing(key)

    def git_env(self) -> dict[str, str]:
        """The clean environment every git command here runs with: no system, global or user config."""
        return dict(self._env)

    def delete(self, key: str) -> None:
        """Remove the repository; nothing happens if it does not exist (a retried delete succeeds)."""
        path = self._path_of(key)
        if not _is_repository(path):
            return
        trash = self.root / ".trash"
        trash.mkdir(parents=True, exist_ok=True)
        doomed = trash / uuid.uuid4().hex
        try:
            with self._locked(key, path):  # let an in-flight commit finish first
                os.rename(path, doomed)  # gone at once for every reader, then removed at leisure
        except RepoNotFound:
            return  # a concurrent delete got there first
        shutil.rmtree(doomed, ignore_errors=True)

    def move(self, old: str, new: str) -> None:
        source, target = self._existing(old), self._path_of(new)
        if target.exists():
            raise Conflict(f"repository '{new}' already exists", code="RepoExists")
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(old, source):
            try:
                os.rename(source, target)
            except OSError as exc:
                raise Conflict(f"repository '{new}' already exists", code="RepoExists") from exc

    # Reading ------------------------------------------------------------------------------------------------

    def head(self, key: str, branch: str = DEFAULT_BRANCH) -> str | None:
        git_dir = self._existing(key)
        return self._commit_of(git_dir, _branch_ref(branch))

    def resolve(self, key: str, revision: str) -> str:
        """The commit sha a branch, tag, full ref name or (short) sha names; RevisionNotFound otherwise."""
        git_dir = self._existing(key)
        for candidate in _revision_candidates(revision):
            sha = self._commit_of(git_dir, candidate)
            if sha is not None:
                return sha
        raise RevisionNotFound(f"revision '{revision}' not found in repository '{key}'")

    def list_tree(self, key: str, revision: str, path: str = "", recursive: bool = True) -> list[TreeEntry]:
        """Entries under the folder `path` ("" = the root), folders included; git's order (by path)."""
        sha = self.resolve(key, revision)
        git_dir = self._existing(key)
        folder = _clean_read_path(path)
        if folder:
            info = self._object_info(git_dir, f"{sha}:{folder}")
            if info is None or info.kind != "tree":
                raise EntryNotFound(f"folder '{path}' not found in '{key}' at revision '{revision}'")
        treeish = f"{sha}:{folder}" if folder else sha
        args = ["ls-tree", "-z", "-l", *(["-r", "-t"] if recursive else []), treeish]
        records = self._git(git_dir, *args).stdout.split(b"\0")
        entries = (_parse_ls_tree(record, folder) for record in records if record)
        return [entry for entry in entries if entry is not None]

    def read_file(self, key: str, revision: str, path: str) -> bytes:
        git_dir, info = self._blob(key, revision, path)
        return self._git(git_dir, "cat-file", "blob", info.oid).stdout

    def file_size(self, key: str, revision: str, path: str) -> int:
        return self._blob(key, revision, path)[1].size

    def blob(self, key: str, commit: str, path: str) -> tuple[str, int]:
        """(blob id, size) of the file at `path` in `commit`: what a download needs before it streams."""
        info = self._blob(key, commit, path)[1]
        return info.oid, info.size

    def stream_blob(self, key: str, oid: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The blob's bytes from `start` (`length` of them, or to the end) in chunks, never all in memory."""
        git_dir = self._existing(key)
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(self._command(git_dir, ["cat-file", "blob", oid]), stdout=subprocess.PIPE,
                                       stderr=errors, env=self._env, cwd=git_dir)
            assert process.stdout is not None
            try:
                to_skip, remaining = start, length
                while remaining is None or remaining > 0:
                    chunk = process.stdout.read(_CHUNK_BYTES)
                    if not chunk:
                        break
                    if to_skip:
                        skipped = min(to_skip, len(chunk))
                        chunk, to_skip = chunk[skipped:], to_skip - skipped
                    if remaining is not None:
                        chunk, remaining = chunk[:remaining], remaining - min(remaining, len(chunk))
                    if chunk:
                        yield chunk
            finally:
                process.stdout.close()
                if process.poll() is None:
                    process.kill()  # the reader went away early (a cancelled download or a range)
                process.wait()

    def read_blobs(self, key: str, oids: Iterable[str]) -> dict[str, bytes]:
        """The content of several (small) blobs in one git call: how LFS pointers are told from files."""
        wanted = list(dict.fromkeys(oids))
        if not wanted:
            return {}
        out = self._git(self._existing(key), "cat-file", "--batch",
                        stdin="".join(f"{oid}\n" for oid in wanted).encode()).stdout
        found: dict[str, bytes] = {}
        at = 0
        for oid in wanted:
            end = out.index(b"\n", at)
            header = out[at:end].decode().split()
            at = end + 1
            if len(header) != 3 or header[1] != "blob":
                continue
            size = int(header[2])
            found[oid] = out[at:at + size]
            at += size + 1  # the content is followed by a newline
        return found

    def small_blobs_reachable(self, key: str, max_size: int) -> list[str]:
        """Ids of the blobs of at most `max_size` bytes that any branch or tag reaches (LFS pointer candidates)."""
        git_dir = self._existing(key)
        listed = self._git(git_dir, "rev-list", "--objects", "--all").stdout
        names = b"".join(line.split(b" ", 1)[0] + b"\n" for line in listed.splitlines() if line)
        if not names:
            return []
        checked = self._git(git_dir, "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)",
                            stdin=names).stdout.decode()
        found = []
        for line in checked.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "blob" and int(parts[2]) <= max_size:
                found.append(parts[0])
        return found

    def log(self, key: str, revision: str = DEFAULT_BRANCH, limit: int = 100, *, skip: int = 0,
            path: str | None = None) -> list[CommitInfo]:
        """Commits reachable from `revision`, newest first (after `skip`; only those touching `path`, if given)."""
        sha = self.resolve(key, revision)
        git_dir = self._existing(key)
        only = ["--", _clean_read_path(path)] if path else []
        # NUL between fields and (with -z) between commits: a commit message can hold anything but NUL.
        out = self._git(git_dir, "log", "-z", f"--max-count={max(limit, 0)}", f"--skip={max(skip, 0)}",
                        "--format=%H%x00%P%x00%an%x00%ct%x00%B", sha, *only).stdout.decode("utf-8", "replace")
        fields = out.split("\0") if out else []
        return [_commit_info(fields[at:at + 5]) for at in range(0, len(fields) - 4, 5)]

    def refs(self, key: str) -> dict[str, dict[str, str]]:
        git_dir = self._existing(key)
        out = self._git(git_dir, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)",
                        "refs/heads", "refs/tags").stdout.decode()
        found: dict[str, dict[str, str]] = {"branches": {}, "tags": {}}
        for line in out.splitlines():
            name, target, peeled = line.split("\0")
            group, short = ("branches", name[11:]) if name.startswith("refs/heads/") else ("tags", name[10:])
            found[group][short] = peeled or target  # an annotated tag names the commit it points at
        return found

    def create_ref(self, key: str, kind: str, name: str, revision: str, message: str | None = None) -> str:
        """A new branch or tag (`kind`) at `revision`; Conflict if it exists. Returns the commit it names."""
        git_dir = self._existing(key)
        if not _is_ref_name(name) or name.startswith("refs/"):
            raise InvalidInput(f"invalid {kind} name {name!r}")
        sha = self.resolve(key, revision)
        ref = f"refs/heads/{name}" if kind == "branch" else f"refs/tags/{name}"
        with self._locked(key, git_dir):
            if self._rev_parse(git_dir, ref) is not None:
                raise Conflict(f"{kind} '{name}' already exists", code="RefExists")
            if kind == "tag" and message:
                self._git(git_dir, "tag", "-a", "-m", message, "--end-of-options", name, sha)
            elif self._git(git_dir, "update-ref", ref, sha, ZERO_SHA, check=False).returncode != 0:
                raise Conflict(f"{kind} '{name}' could not be created (a ref with a clashing name exists)")
        return sha

    def delete_ref(self, key: str, kind: str, name: str) -> None:
        """Remove a branch (never the default one) or a tag; RevisionNotFound if there is none."""
        git_dir = self._existing(key)
        if kind == "branch" and name == DEFAULT_BRANCH:
            raise InvalidInput(f"the default branch '{DEFAULT_BRANCH}' cannot be deleted")
        ref = f"refs/heads/{name}" if kind == "branch" else f"refs/tags/{name}"
        with self._locked(key, git_dir):
            current = self._rev_parse(git_dir, ref) if _is_ref_name(name) else None
            if current is None:
                raise RevisionNotFound(f"{kind} '{name}' not found in repository '{key}'")
            self._git(git_dir, "update-ref", "-d", ref, current)

    def checkout(self, key: str, sha: str, dest: Path) -> None:
        """Materialise the tree of `sha` into `dest` (created if missing, else it must be empty)."""
        commit = self.resolve(key, sha)
        git_dir = self._existing(key)
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty stderr cannot stall stdout
            process = subprocess.Popen(self._command(git_dir, ["archive", "--format=tar", commit]),
                                       stdout=subprocess.PIPE, stderr=errors, env=self._env, cwd=git_dir)
            assert process.stdout is not None
            try:
                with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
                    _unpack_tree(archive, dest)
                while process.stdout.read(_CHUNK_BYTES):  # tar's end padding: git must not die of SIGPIPE
                    pass
            finally:
                process.stdout.close()
                returncode = process.wait()
            if returncode != 0:
                errors.seek(0)
                raise GitCommandFailed(["archive", commit], returncode, errors.read())

    # Writing ------------------------------------------------------------------------------------------------

    def commit_tree(self, key: str, src: Path, message: str, author: str, *, parent: str | None = None,
                    branch: str = DEFAULT_BRANCH) -> CommitResult:
        """Replace the whole tree with the files under `src` (a REST upload or a CLI push).

        `parent`, when given, must be the branch's current head, else Conflict: no commit is overwritten.
        """
        git_dir = self._existing(key)
        files = _scan_source(src)
        oids = self._hash_files(git_dir, [file.location for file in files])
        entries = {file.path: _IndexEntry(file.mode, oid) for file, oid in zip(files, oids, strict=True)}
        tree = self._write_tree(git_dir, entries)
        ref = _branch_ref(branch)
        with self._locked(key, git_dir):
            current = self._commit_of(git_dir, ref)
            _require_parent(parent, current, branch)
            return self._commit(git_dir, ref, tree, message, author, current)

    def commit_changes(self, key: str, additions: Mapping[str, bytes | Path], deletions: Iterable[str],
                       message: str, author: str, *, parent_commit: str | None = None,
                       branch: str = DEFAULT_BRANCH) -> CommitResult:
        """Overlay additions and deletions on the branch's tree (the Hub commit API); all or nothing.

        Deletions apply first; a path naming a folder (`dir` or `dir/`) deletes everything under it, and one
        that matches nothing raises EntryNotFound. `parent_commit`, when given, must be the current head.
        """
        git_dir = self._existing(key)
        added = _normalised_additions(additions)
        removed = [check_relpath(path) for path in deletions]
        new_entries = self._hash_additions(git_dir, added)
        ref = _branch_ref(branch)
        with self._locked(key, git_dir):
            current = self._commit_of(git_dir, ref)
            _require_parent(parent_commit, current, branch)
            entries = self._read_tree(git_dir, current) if current else {}
            for path in removed:
                _delete_path(entries, path, key)
            entries.update(new_entries)
            _require_no_file_folder_clash(entries)
            tree = self._write_tree(git_dir, entries)
            return self._commit(git_dir, ref, tree, message, author, current)

    def _commit(self, git_dir: Path, ref: str, tree: str, message: str, author: str,
                current: str | None) -> CommitResult:
        if current is not None and self._rev_parse(git_dir, f"{current}^{{tree}}") == tree:
            return CommitResult(current, changed=False)
        name, email = _identity(author)
        parents = ["-p", current] if current else []
        sha = self._git(git_dir, "commit-tree", tree, *parents, stdin=_message_bytes(message),
                        env={"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email}).stdout.decode().strip()
        # Compare-and-swap: fails if the branch moved since `current` was read (a push that took no lock).
        moved = self._git(git_dir, "update-ref", ref, sha, current or ZERO_SHA, check=False)
        if moved.returncode != 0:
            raise Conflict(f"'{ref}' moved while committing; fetch the new head and try again")
        return CommitResult(sha, changed=True)

    def _hash_files(self, git_dir: Path, locations: list[Path]) -> list[str]:
        if not locations:
            return []
        names = [os.fsencode(location.absolute()) for location in locations]
        if any(b"\n" in name for name in names):  # --stdin-paths reads one path a line
            raise InvalidInput("a file path contains a newline")
        out = self._git(git_dir, "hash-object", "-w", "--no-filters", "--stdin-paths",
                        stdin=b"".join(name + b"\n" for name in names)).stdout
        return out.decode().split()

    def _hash_additions(self, git_dir: Path, added: dict[str, bytes | Path]) -> dict[str, _IndexEntry]:
        with tempfile.TemporaryDirectory(prefix="spacehub-blobs-") as scratch:
            locations, modes = [], []
            for number, (path, content) in enumerate(added.items()):
                if isinstance(content, Path):
                    locations.append(content)
                    modes.append(_file_mode(content, path))
                else:
                    location = Path(scratch) / str(number)
                    location.write_bytes(content)
                    locations.append(location)
                    modes.append(_MODE_FILE)
            oids = self._hash_files(git_dir, locations)
        return {path: _IndexEntry(mode, oid) for path, mode, oid in zip(added, modes, oids, strict=True)}

    def _write_tree(self, git_dir: Path, entries: Mapping[str, _IndexEntry]) -> str:
        with tempfile.TemporaryDirectory(prefix="spacehub-index-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            records = b"".join(f"{entry.mode} {entry.oid}\t{path}".encode() + b"\0"
                               for path, entry in entries.items())
            self._git(git_dir, "update-index", "-z", "--index-info", stdin=records, env=env)
            return self._git(git_dir, "write-tree", env=env).stdout.decode().strip()

    def _read_tree(self, git_dir: Path, commit: str) -> dict[str, _IndexEntry]:
        out = self._git(git_dir, "ls-tree", "-r", "-z", "--full-tree", commit).stdout
        entries = {}
        for record in out.split(b"\0"):
            if record:
                meta, path = record.split(b"\t", 1)
                mode, _kind, oid = meta.decode().split()
                entries[path.decode("utf-8", "surrogateescape")] = _IndexEntry(mode, oid)
        return entries

    # Plumbing -----------------------------------------------------------------------------------------------

    def _blob(self, key: str, revision: str, path: str) -> tuple[Path, _ObjectInfo]:
        sha = self.resolve(key, revision)
        git_dir = self._existing(key)
        target = _clean_read_path(path)
        info = self._object_info(git_dir, f"{sha}:{target}") if target else None
        if info is None or info.kind != "blob":
            raise EntryNotFound(f"file '{path}' not found in '{key}' at revision '{revision}'")
        return git_dir, info

    def _object_info(self, git_dir: Path, name: str) -> _ObjectInfo | None:
        out = self._git(git_dir, "cat-file", "--batch-check", stdin=name.encode() + b"\n").stdout.decode()
        parts = out.split()
        if len(parts) != 3 or parts[1] == "missing":
            return None
        return _ObjectInfo(parts[0], parts[1], int(parts[2]))

    def _commit_of(self, git_dir: Path, name: str) -> str | None:
        return self._rev_parse(git_dir, f"{name}^{{commit}}")

    def _rev_parse(self, git_dir: Path, name: str) -> str | None:
        found = self._git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", name, check=False)
        return found.stdout.decode().strip() if found.returncode == 0 else None

    @contextmanager
    def _locked(self, key: str, git_dir: Path) -> Iterator[None]:
        """Hold the repository's writer lock (flock: it excludes this process's other threads too)."""
        try:
            fd = os.open(git_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError as exc:
            raise RepoNotFound(f"repository '{key}' not found") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not _is_repository(git_dir):  # deleted or moved while we waited
                raise RepoNotFound(f"repository '{key}' not found")
            yield
        finally:
            os.close(fd)

    def _path_of(self, key: str) -> Path:
        # Names are validated where they are made; this only guarantees the key cannot leave `root`.
        parts = key.split("/")
        kind = parts.pop(0) if len(parts) == 3 and parts[0] in _REPO_KIND_PREFIXES else None
        if len(parts) != 2 or not all(_KEY_SEGMENT.fullmatch(part) and ".." not in part for part in parts):
            raise InvalidInput(f"repository key {key!r} must be 'owner/name'")
        owner, name = parts
        base = self.root / kind if kind else self.root
        return base / owner / f"{name}.git"

    def _existing(self, key: str) -> Path:
        path = self._path_of(key)
        if not _is_repository(path):
            raise RepoNotFound(f"repository '{key}' not found")
        return path

    def _command(self, git_dir: Path, args: list[str]) -> list[str]:
        return ["git", f"--git-dir={git_dir}", *_GIT_OPTIONS, *args]

    def _git(self, git_dir: Path, *args: str, stdin: bytes | None = None,
             env: Mapping[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        # cwd is the bare repository itself: git never runs inside a folder of user files.
        return self._run(list(args), git_dir=git_dir, cwd=git_dir, stdin=stdin, env=env, check=check)

    def _run(self, args: list[str], *, cwd: Path, git_dir: Path | None = None, stdin: bytes | None = None,
             env: Mapping[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = self._command(git_dir, args) if git_dir else ["git", *_GIT_OPTIONS, *args]
        done = subprocess.run(command, input=stdin, capture_output=True, cwd=cwd, check=False,
                              env={**self._env, **(env or {})})
        if check and done.returncode != 0:
            raise GitCommandFailed(args, done.returncode, done.stderr)
        return done


# Helpers ----------------------------------------------------------------------------------------------------


def _is_repository(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def _branch_ref(branch: str) -> str:
    if not _is_ref_name(branch):
        raise InvalidInput(f"invalid branch name {branch!r}")
    return f"refs/heads/{branch}"


def _is_ref_name(name: str) -> bool:
    # A conservative subset of git-check-ref-format: revision syntax (`^`, `~`, `:`, `@{`) never reaches git.
    return (bool(_REF_NAME.fullmatch(name)) and ".." not in name and "//" not in name
            and not name.startswith(("-", "/", ".")) and not name.endswith(("/", ".", ".lock")))


def _revision_candidates(revision: str) -> list[str]:
    """Full ref names to try for a revision, in the Hub's order: branch, tag, then commit sha."""
    if not _is_ref_name(revision):
        return []
    if revision.startswith("refs/"):
        return [revision]
    candidates = [f"refs/heads/{revision}", f"refs/tags/{revision}"]
    if _HEX_SHA.fullmatch(revision):
        candidates.append(revision)
    return candidates


def _require_parent(expected: str | None, current: str | None, branch: str) -> None:
    if expected is not None and expected != current:
        raise Conflict(f"parent commit {expected} is not the head of '{branch}' (now "
                       f"{current or 'no commit'}): a commit has happened since; fetch it and try again")


def _clean_read_path(path: str) -> str:
    """A repository path as readers pass it (`/dir/file`, `dir/`): normalised, never climbing out."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts or any(ord(char) < 0x20 for char in path):
        raise InvalidInput(f"invalid path {path!r}")
    return "/".join(parts)


def _parse_ls_tree(record: bytes, folder: str) -> TreeEntry | None:
    meta, name = record.split(b"\t", 1)
    mode, kind, oid, size = meta.decode().split()
    if mode == _MODE_SUBMODULE:  # a pushed submodule has no content here
        return None
    path = name.decode("utf-8", "surrogateescape")
    full = f"{folder}/{path}" if folder else path
    if kind == "tree":
        return TreeEntry(full, 0, oid, "directory")
    return TreeEntry(full, int(size), oid, "file")


def _commit_info(fields: list[str]) -> CommitInfo:
    sha, parents, author, timestamp, message = fields
    return CommitInfo(sha=sha, message=message.removesuffix("\n"), author=author, timestamp=int(timestamp),
                      parents=tuple(parents.split()))


def _identity(author: str) -> tuple[str, str]:
    """(name, email) from `Name <email>` or a bare user name; git refuses empty names and angle brackets."""
    match = re.fullmatch(r"\s*([^<>]*?)\s*<([^<>\s]*)>\s*", author)
    if match and match.group(1).strip(".,:;'\"\\ "):
        return match.group(1), match.group(2)
    name = re.sub(r"[<>\x00-\x1f]", "", author).strip()
    if not name.strip(".,:;'\"\\ "):
        name = "anonymous"
    return name, f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}@localhost"


def _message_bytes(message: str) -> bytes:
    if "\x00" in message:
        raise InvalidInput("the commit message contains a NUL byte")
    if message and not message.endswith("\n"):
        message += "\n"
    return message.encode("utf-8")


def _scan_source(src: Path) -> list[_SourceFile]:
    """Every regular file under `src`, by checked repository path; links and special files are refused."""
    found: list[_SourceFile] = []
    pending: list[tuple[Path, str]] = [(src, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                relative = prefix + entry.name
                path = check_relpath(relative)
                if entry.is_symlink():
                    raise UnsafeUpload(f"entry {relative!r}: symbolic links are not allowed")
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), relative + "/"))
                elif entry.is_file(follow_symlinks=False):
                    executable = entry.stat(follow_symlinks=False).st_mode & stat.S_IXUSR
                    found.append(_SourceFile(path, _MODE_EXECUTABLE if executable else _MODE_FILE,
                                             Path(entry.path)))
                else:
                    raise UnsafeUpload(f"entry {relative!r}: special files are not allowed")
    return found


def _normalised_additions(additions: Mapping[str, bytes | Path]) -> dict[str, bytes | Path]:
    added: dict[str, bytes | Path] = {}
    for raw_path, content in additions.items():
        path = check_relpath(raw_path)
        if path in added:
            raise InvalidInput(f"path {path!r} is added twice in one commit")
        added[path] = content
    return added


def _file_mode(location: Path, path: str) -> str:
    info = location.lstat()  # never follow a link: its target could be any file on this machine
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"the content for {path!r} is not a regular file")
    return _MODE_EXECUTABLE if info.st_mode & stat.S_IXUSR else _MODE_FILE


def _delete_path(entries: dict[str, _IndexEntry], path: str, key: str) -> None:
    if path in entries:
        del entries[path]
        return
    inside = [name for name in entries if name.startswith(path + "/")]
    if not inside:
        raise EntryNotFound(f"cannot delete '{path}': no such file or folder in '{key}'")
    for name in inside:
        del entries[name]


def _require_no_file_folder_clash(entries: Mapping[str, _IndexEntry]) -> None:
    for path in entries:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in entries:
                raise InvalidInput(f"path '{path}' needs a folder '{folder}', which is a file")


def _unpack_tree(archive: tarfile.TarFile, dest: Path) -> None:
    """Write a `git archive` stream's files; symbolic links come last and must resolve inside `dest`."""
    links: list[tuple[Path, str]] = []
    for member in archive:
        path = check_relpath(member.name)
        target = dest / path
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.issym():
            links.append((target, member.linkname))
        elif member.isfile():
            _write_member(archive, member, target)
        else:
            raise UnsafeUpload(f"entry {member.name!r}: unexpected entry type {member.type!r}")
    # Created only after every file is written, so no write can go through a link.
    for location, link_target in links:
        if os.path.isabs(link_target):
            raise UnsafeUpload(f"entry '{location.relative_to(dest)}': symbolic link to an absolute path")
        location.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link_target, location)
    # Each link is judged by where it really leads, through the others (`a -> .`, `b -> a/../x` escapes).
    root = os.path.realpath(dest)
    for location, _ in links:
        resolved = os.path.realpath(location)
        if resolved != root and not resolved.startswith(root + os.sep):
            raise UnsafeUpload(f"entry '{location.relative_to(dest)}': symbolic link points outside the "
                               "repository")


def _write_member(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    source: IO[bytes] | None = archive.extractfile(member)
    if source is None:
        raise UnsafeUpload(f"entry {member.name!r}: has no data")
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with source, os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)
        shutil.copyfileobj(source, out)
