"""The pre-receive check of every `git push`: hostile pushes are refused like hostile archives.

git's receive-pack runs this (`python -m spacehub.pushcheck`) as its pre-receive hook once it has received the
pack into a quarantine (GIT_QUARANTINE_PATH) and before it moves any ref. When this exits non-zero, git drops
the pushed objects and changes no ref; what it prints on stderr reaches the pusher as `remote: ...` lines.

The rules (archives.py's rules for uploads, applied to git objects):

- Only branches (`refs/heads/*`) may be pushed; a push that also carries tags is refused whole rather than
  half-applied. A space builds and serves `main` only; other branches are stored. A branch cannot be deleted
  by a push and only moves forward (no force-push): builds, logs and the Hub API's commit list refer to its
  history.
- Every tree the push adds, in every pushed commit (not only the tip), holds only regular files (100644,
  100755) and folders: no symbolic links (120000), no submodules (160000). Every name passes the archive
  rules: no `.git` in any spelling git itself fears (`.GIT`, `.git.`, `git~1`, `.git::$INDEX_ALLOCATION`,
  HFS+ ignorable characters), no `..`, no control characters or backslashes, at most 255 bytes.
- Every blob the push adds is at most `max_file_bytes`.
- The tip's tree, as it will be built, has at most `max_entries` entries (folders included) and
  `max_tree_bytes` bytes of files, and every full path passes the archive rules (its length included).

- In a space's repository, every pushed branch's README.md passes the front-matter rules a build applies
  (`spaceconfig.check_readme`: no YAML aliases, size and field caps, the schema). A hostile or broken README
  is refused here, naming the rule in git's output, as an upload refuses it with a 4xx: nothing lands, and no
  build job ever parses it.

The limits come in the environment (`SPACEHUB_MAX_FILE_BYTES`, `SPACEHUB_MAX_TREE_BYTES`,
`SPACEHUB_MAX_ENTRIES`), set by the smart HTTP service from the platform's settings;
`SPACEHUB_CHECK_SPACE_CONFIG=1` asks for the README check (a space's repository).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, NamedTuple

from spacehub.archives import check_relpath
from spacehub.errors import SpaceConfigError, UnsafeUpload

MAIN_REF = "refs/heads/main"
BRANCH_PREFIX = "refs/heads/"
SPACE_CONFIG_VARIABLE = "SPACEHUB_CHECK_SPACE_CONFIG"
README = "README.md"
LIMIT_VARIABLES = ("SPACEHUB_MAX_FILE_BYTES", "SPACEHUB_MAX_TREE_BYTES", "SPACEHUB_MAX_ENTRIES")

_ZERO = "0" * 40
_MODE_FILE, _MODE_EXECUTABLE, _MODE_TREE = b"100644", b"100755", b"40000"
_MODE_SYMLINK, _MODE_SUBMODULE = b"120000", b"160000"
# Code points HFS+ ignores when comparing names, so `.g\u200cit` is `.git` there (git's utf8.c, next_hfs_char).
_HFS_IGNORED = dict.fromkeys([0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x206A,
                              0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0xFEFF])
_GIT_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


class PushRefused(Exception):
    """The push breaks a rule; the message says which, in words for the person who pushed."""


@dataclass(frozen=True)
class PushLimits:
    max_file_bytes: int
    max_tree_bytes: int
    max_entries: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PushLimits:
        file_bytes, tree_bytes, entries = (int(env[name]) for name in LIMIT_VARIABLES)
        return cls(max_file_bytes=file_bytes, max_tree_bytes=tree_bytes, max_entries=entries)

    def as_env(self) -> dict[str, str]:
        values = (self.max_file_bytes, self.max_tree_bytes, self.max_entries)
        return {name: str(value) for name, value in zip(LIMIT_VARIABLES, values, strict=True)}


class RefUpdate(NamedTuple):
    old: str
    new: str
    ref: str


class _Object(NamedTuple):
    oid: str
    kind: str
    size: int


# The rules ----------------------------------------------------------------------------------------------------


def check_push(updates: list[RefUpdate], limits: PushLimits, *, git_dir: str | None = None,
               space_config: bool = False) -> None:
    """Raise PushRefused on the first broken rule. git runs in `git_dir` (default: git's own environment);
    `space_config` checks each tip's README.md front matter (a space's repository)."""
    git = _Git(git_dir)
    for update in updates:
        _check_ref_update(git, update)
    tips = [update.new for update in updates]
    if not tips:
        return
    new_objects = git.objects_info(git.new_object_ids(tips))
    for obj in new_objects:
        if obj.kind == "blob" and obj.size > limits.max_file_bytes:
            where = git.path_of(obj.oid, tips) or f"blob {obj.oid[:12]}"
            raise PushRefused(f"'{where}': the file is {obj.size} bytes, over the limit of {limits.max_file_bytes}")
    trees = [obj.oid for obj in new_objects if obj.kind == "tree"]
    for tree, entries in git.read_trees(trees):
        for mode, name in entries:
            rule = entry_violation(mode, name)
            if rule is not None:
                folder = git.path_of(tree, tips)
                where = f"{folder}/{_shown(name)}" if folder else _shown(name)
                raise PushRefused(f"'{where}': {rule}")
    for tip in tips:
        _check_tip_tree(git, tip, limits)
    if space_config:
        for update in updates:
            _check_readme(git, update)


def entry_violation(mode: bytes, name: bytes) -> str | None:
    """Why one tree entry may not be in a space's repository, or None if it may."""
    if mode == _MODE_SYMLINK:
        return "symbolic links are not allowed"
    if mode == _MODE_SUBMODULE:
        return "submodules are not allowed"
    if mode not in (_MODE_FILE, _MODE_EXECUTABLE, _MODE_TREE):
        return f"file mode {mode.decode('ascii', 'replace')} is not allowed (only files and folders)"
    text = name.decode("utf-8", "surrogateescape")
    if not text or text in (".", "..") or "/" in text:
        return "invalid name in a tree"
    if is_dotgit_alias(text):
        return ".git folders are not allowed"
    try:
        check_relpath(text)
    except UnsafeUpload as exc:
        return _rule_of(exc)
    return None


def is_dotgit_alias(name: str) -> bool:
    """A name some file system reads as `.git` (NTFS: trailing dots and spaces, `git~1`, alternate data
    streams; HFS+: ignorable code points; both: any case)."""
    folded = name.translate(_HFS_IGNORED).lower()
    stem = folded.partition(":")[0]  # NTFS `.git::$INDEX_ALLOCATION` is the folder `.git`
    return stem.rstrip(". ") == ".git" or stem == "git~1"


def _check_ref_update(git: _Git, update: RefUpdate) -> None:
    if not update.ref.startswith(BRANCH_PREFIX) or len(update.ref) == len(BRANCH_PREFIX):
        raise PushRefused(f"only branches can be pushed here ('{update.ref}' was refused): create tags with the "
                          "Hub API (create_tag)")
    branch = update.ref.removeprefix(BRANCH_PREFIX)
    if update.new == _ZERO:
        raise PushRefused(f"the branch '{branch}' cannot be deleted by a push: use the Hub API (delete_branch)")
    if update.old != _ZERO and not git.is_ancestor(update.old, update.new):
        raise PushRefused(f"non-fast-forward push to '{branch}' refused: it would drop commits that are there now. "
                          "Fetch and merge (or rebase) first; history is never rewritten here")
    if git.object_kind(update.new) != "commit":
        raise PushRefused(f"'{branch}' must point at a commit")


def _check_tip_tree(git: _Git, tip: str, limits: PushLimits) -> None:
    total = 0
    for entries, (mode, size, path) in enumerate(git.walk_tree(tip), start=1):
        if entries > limits.max_entries:
            raise PushRefused(f"the tree has more than {limits.max_entries} entries (files and folders)")
        shown = _shown(path)
        rule = entry_violation(mode, path.rpartition(b"/")[2])
        if rule is None:
            try:
                check_relpath(path.decode("utf-8", "surrogateescape"))
            except UnsafeUpload as exc:
                rule = _rule_of(exc)
        if rule is not None:
            raise PushRefused(f"'{shown}': {rule}")
        total += size
        if total > limits.max_tree_bytes:
            raise PushRefused(f"the files of the tree add up to more than {limits.max_tree_bytes} bytes "
                              f"(the limit was passed at '{shown}')")


def _check_readme(git: _Git, update: RefUpdate) -> None:
    """The README the push brings (one the branch already had passed when it came)."""
    readme = git.oid_at(update.new, README)
    if readme is None or (update.old != _ZERO and git.oid_at(update.old, README) == readme):
        return
    # Imported only here: the schema (pydantic) is most of this hook's start-up, and most pushes leave the README.
    from spacehub.spaceconfig import check_readme

    try:
        check_readme(git.run("cat-file", "blob", readme).stdout)
    except SpaceConfigError as exc:
        raise PushRefused(exc.message) from None


def _rule_of(exc: UnsafeUpload) -> str:
    # check_relpath says "entry '<path>': <rule>"; the caller names the path itself.
    return exc.message.partition(": ")[2] or exc.message


def _shown(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


# git, in the hook's environment (the quarantine's objects are visible through it) ------------------------------


class _Git:
    def __init__(self, git_dir: str | None) -> None:
        self._prefix = ["git", *(["--git-dir", git_dir] if git_dir else []), *_GIT_OPTIONS]
        self._paths: dict[str, str] | None = None

    def run(self, *args: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([*self._prefix, *args], input=stdin, capture_output=True, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.decode('utf-8', 'replace').strip()}")
        return done

    def is_ancestor(self, old: str, new: str) -> bool:
        return self.run("merge-base", "--is-ancestor", old, new, check=False).returncode == 0

    def object_kind(self, oid: str) -> str:
        return self.run("cat-file", "-t", oid).stdout.decode().strip()

    def new_object_ids(self, tips: list[str]) -> list[str]:
        """Every object the tips reach that no existing ref reaches: what this push adds."""
        out = self.run("rev-list", "--objects", "--no-object-names", *tips, "--not", "--all").stdout
        return out.decode().split()

    def objects_info(self, oids: list[str]) -> list[_Object]:
        if not oids:
            return []
        out = self.run("cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)",
                       stdin="".join(oid + "\n" for oid in oids).encode()).stdout.decode()
        found = []
        for line in out.splitlines():
            oid, kind, size = line.split()
            found.append(_Object(oid, kind, int(size)))
        return found

    def read_trees(self, trees: list[str]) -> Iterator[tuple[str, list[tuple[bytes, bytes]]]]:
        """(tree id, [(mode, name), ...]) for each tree, streamed from one `cat-file --batch`."""
        if not trees:
            return
        with tempfile.TemporaryFile() as wanted:  # a file, not a pipe: git's output cannot stall our input
            wanted.write("".join(oid + "\n" for oid in trees).encode())
            wanted.seek(0)
            process = subprocess.Popen([*self._prefix, "cat-file", "--batch"], stdin=wanted,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert process.stdout is not None
            try:
                for _ in trees:
                    oid, size = _batch_header(process.stdout)
                    body = _read_exactly(process.stdout, size + 1)[:-1]
                    yield oid, _tree_entries(body, len(oid) // 2)
            finally:
                process.stdout.close()
                process.kill()
                process.wait()

    def walk_tree(self, commit: str) -> Iterator[tuple[bytes, int, bytes]]:
        """(mode, size, full path) of every entry of the commit's tree, folders included (size 0)."""
        out = self.run("ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit).stdout
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, path = record.split(b"\t", 1)
            mode, _kind, _oid, size = meta.split()
            yield mode.lstrip(b"0") or b"0", int(size) if size.isdigit() else 0, path

    def oid_at(self, commit: str, path: str) -> str | None:
        """The blob at `path` in the commit's tree; None when there is no such file (its size is already within
        max_file_bytes: the blob rule ran first)."""
        found = self.run("rev-parse", "--verify", "--quiet", f"{commit}:{path}", check=False)
        oid = found.stdout.decode().strip()
        if found.returncode != 0 or not oid or self.object_kind(oid) != "blob":
            return None
        return oid

    def path_of(self, oid: str, tips: list[str]) -> str | None:
        """The path at which the push first reaches `oid` (for messages; "" for a root tree)."""
        if self._paths is None:
            out = self.run("rev-list", "--objects", *tips, "--not", "--all").stdout
            self._paths = {}
            for line in out.split(b"\n"):
                found, _, path = line.partition(b" ")
                if found:
                    self._paths.setdefault(found.decode(), path.decode("utf-8", "backslashreplace"))
        return self._paths.get(oid)


def _batch_header(stream: IO[bytes]) -> tuple[str, int]:
    header = stream.readline().split()
    if len(header) != 3 or header[1] != b"tree":
        raise RuntimeError(f"unexpected cat-file answer {b' '.join(header)!r}")
    return header[0].decode(), int(header[2])


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise RuntimeError("cat-file ended early")
    return data


def _tree_entries(body: bytes, hash_bytes: int) -> list[tuple[bytes, bytes]]:
    """A raw tree object's entries: `<mode> <name>\\0<binary id>` one after another."""
    entries = []
    at = 0
    while at < len(body):
        space = body.index(b" ", at)
        nul = body.index(b"\0", space)
        entries.append((body[at:space], body[space + 1:nul]))
        at = nul + 1 + hash_bytes
    return entries


# The hook ---------------------------------------------------------------------------------------------------


def read_updates(stream: IO[bytes]) -> list[RefUpdate]:
    updates = []
    for line in stream.read().decode("utf-8", "replace").splitlines():
        old, new, ref = line.split(" ", 2)
        updates.append(RefUpdate(old, new, ref))
    return updates


def main() -> int:
    try:
        check_push(read_updates(sys.stdin.buffer), PushLimits.from_env(os.environ),
                   space_config=os.environ.get(SPACE_CONFIG_VARIABLE) == "1")
    except PushRefused as refusal:
        print(f"spacehub: push refused: {refusal}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - refuse what could not be checked, and say so
        print(f"spacehub: push refused: the push could not be checked ({exc})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
