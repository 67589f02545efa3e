"""Large files the Hub's way: git holds an LFS pointer, the object store holds the bytes.

- A pointer is git-lfs's text (`version https://git-lfs.github.com/spec/v1`, `oid sha256:<hex>`, `size <n>`),
  so `git lfs clone` sees proper pointers and the Hub API serves the object in place of the pointer.
- Which files go to LFS at preupload: those at or over `lfs_threshold_bytes`, and those the repo's
  `.gitattributes` marks `filter=lfs`. A commit that adds an LFS file its `.gitattributes` does not cover gets
  a rule for that path added to `.gitattributes` in the same commit (as the Hub does), so git clients smudge it.
- Grants: a commit may name an object only if its author proved they hold it (uploaded its bytes, hash checked)
  or the repo already holds it. A sha256 alone is never proof: knowing it must not open another user's
  private file.
- GC: an object no branch or tag of any repo points to, older than the grace period, is deleted.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pathspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spacehub.access import repo_key
from spacehub.context import Platform
from spacehub.errors import Forbidden
from spacehub.objectstore import OID
from spacehub.store.models import LfsGrant, Space, User

log = logging.getLogger(__name__)

POINTER_VERSION = "https://git-lfs.github.com/spec/v1"
MAX_POINTER_BYTES = 1024  # git-lfs's own limit for what may be a pointer
_POINTER = re.compile(rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize (\d+)\n"
                      rb"(?:[a-z0-9.-]+ [^\n]*\n)*")
_LFS_ATTRIBUTE = re.compile(r"(?:^|\s)filter=lfs(?:\s|$)")


@dataclass(frozen=True)
class Pointer:
    oid: str
    size: int
    pointer_size: int


def pointer_bytes(oid: str, size: int) -> bytes:
    return f"version {POINTER_VERSION}\noid sha256:{oid}\nsize {size}\n".encode()


def parse_pointer(data: bytes) -> Pointer | None:
    if len(data) > MAX_POINTER_BYTES:
        return None
    match = _POINTER.fullmatch(data)
    if match is None:
        return None
    return Pointer(match.group(1).decode(), int(match.group(2)), len(data))


def pointers(platform: Platform, key: str, blob_ids: Iterable[str]) -> dict[str, Pointer]:
    """The blobs (by id) among `blob_ids` that are LFS pointers."""
    found = {}
    for oid, data in platform.repos.read_blobs(key, blob_ids).items():
        pointer = parse_pointer(data)
        if pointer is not None:
            found[oid] = pointer
    return found


def materialize(platform: Platform, tree: Path) -> int:
    """Replace the LFS pointers of a checked-out tree by their objects (what a space's app reads); returns how
    many. A pointer whose object is not stored stays as it is, as git-lfs leaves it."""
    replaced = 0
    for path in tree.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_POINTER_BYTES:
            continue
        pointer = parse_pointer(path.read_bytes())
        if pointer is None or platform.objects.size(pointer.oid) != pointer.size:
            continue
        staging = path.with_name(f".{path.name}.lfs")
        with open(staging, "wb") as out:
            for chunk in platform.objects.read(pointer.oid):
                out.write(chunk)
        os.chmod(staging, path.stat().st_mode & 0o777)
        os.replace(staging, path)
        replaced += 1
    return replaced


# .gitattributes -------------------------------------------------------------------------------------------------


def lfs_patterns(gitattributes: str | None) -> pathspec.PathSpec | None:
    """The patterns `.gitattributes` marks `filter=lfs` (a later `-filter`/`!filter` line is not undone: rare)."""
    if not gitattributes:
        return None
    patterns = []
    for line in gitattributes.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, attributes = line.partition(" ")
        if _LFS_ATTRIBUTE.search(" " + attributes.replace("\t", " ")):
            # gitattributes patterns without a slash match at any depth, like gitignore's
            patterns.append(pattern.replace("[[:space:]]", "[ ]"))  # pathspec knows no POSIX classes
    return pathspec.PathSpec.from_lines("gitwildmatch", patterns) if patterns else None


def tracked(spec: pathspec.PathSpec | None, path: str) -> bool:
    return spec is not None and spec.match_file(path)


def attributes_with(gitattributes: str | None, paths: Iterable[str]) -> str | None:
    """`.gitattributes` with a rule for every path in `paths` it does not track yet; None if none is missing."""
    spec = lfs_patterns(gitattributes)
    missing = [path for path in paths if not tracked(spec, path)]
    if not missing:
        return None
    text = gitattributes or ""
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "".join(f"{_escaped(path)} filter=lfs diff=lfs merge=lfs -text\n" for path in missing)


def _escaped(path: str) -> str:
    # gitattributes has no quoting for spaces; `[ ]` is a one-character class that matches the space.
    escaped = re.sub(r"([*?\[\]\\!#])", r"\\\1", path)
    return "/" + escaped.replace(" ", "[[:space:]]")


# Grants ---------------------------------------------------------------------------------------------------------


def grant(platform: Platform, user_id: int, oid: str) -> None:
    with platform.db.session() as session:
        if session.scalar(select(LfsGrant.id).where(LfsGrant.oid == oid, LfsGrant.user_id == user_id)):
            return
        session.add(LfsGrant(oid=oid, user_id=user_id))
        try:
            session.commit()
        except IntegrityError:  # a parallel upload of the same object by the same user
            session.rollback()


def granted(session: Session, user: User, oids: Iterable[str]) -> set[str]:
    wanted = list(set(oids))
    if not wanted:
        return set()
    return set(session.scalars(select(LfsGrant.oid).where(LfsGrant.user_id == user.id, LfsGrant.oid.in_(wanted))))


def repo_oids(platform: Platform, key: str) -> set[str]:
    """Every object any branch or tag of the repo points to."""
    candidates = platform.repos.small_blobs_reachable(key, MAX_POINTER_BYTES)
    return {pointer.oid for pointer in pointers(platform, key, candidates).values()}


def check_usable(platform: Platform, session: Session, user: User, key: str, wanted: dict[str, int]) -> None:
    """Refuse a commit naming an object (oid -> size) the caller never uploaded and the repo does not hold."""
    if not wanted:
        return
    allowed = granted(session, user, wanted)
    rest = set(wanted) - allowed
    if rest:
        allowed |= rest & repo_oids(platform, key)
    for oid, size in wanted.items():
        if oid not in allowed:
            raise Forbidden(f"LFS object {oid} was not uploaded by you: upload its bytes first (LFS batch API)")
        stored = platform.objects.size(oid)
        if stored is None:
            raise Forbidden(f"LFS object {oid} is not stored: upload it first (LFS batch API)")
        if size >= 0 and stored != size:
            raise Forbidden(f"LFS object {oid} is {stored} bytes, not {size}")
        platform.objects.touch(oid)  # referenced from now on: not collected while this commit lands


# Garbage collection ---------------------------------------------------------------------------------------------


def collect_garbage(platform: Platform, grace_s: float) -> list[str]:
    """Delete objects no branch or tag of any repo references (untouched for `grace_s`); returns their ids.

    An object is touched when it is uploaded, offered again by the batch API and named by a commit, so one that
    a commit is about to reference is always within its grace period."""
    with platform.db.session() as session:
        keys = [repo_key(space) for space in session.scalars(select(Space))]
    referenced: set[str] = set()
    for key in keys:
        if platform.repos.exists(key):
            referenced |= repo_oids(platform, key)
    cutoff = time.time() - grace_s
    removed = []
    for stored in platform.objects.objects():
        if stored.oid not in referenced and stored.stored_at < cutoff and OID.fullmatch(stored.oid):
            platform.objects.delete(stored.oid)
            removed.append(stored.oid)
    with platform.db.session() as session:  # a grant for bytes that are gone proves nothing any more
        for gone in session.scalars(select(LfsGrant)):
            if platform.objects.size(gone.oid) is None:
                session.delete(gone)
        session.commit()
    platform.objects.remove_stale_uploads(grace_s)
    if removed:
        log.info("LFS garbage collection removed %d objects", len(removed))
    return removed
