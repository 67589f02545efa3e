"""Large-file objects (LFS), content-addressed by sha256, behind one small interface.

An object is written through a `Staged` upload: bytes stream in (in order, or at offsets for a multipart
upload whose parts may come in any order), the size cap is enforced as they arrive, and `finish(oid, size)`
publishes the object only if its sha256 and size are exactly the ones declared. A mismatch leaves nothing
behind. Objects are stored once, whatever number of repos name them; `delete` is for the garbage collector.

`LocalObjectStore` keeps them under the data dir (`objects/ab/cd/<sha256>`; `staging/<upload id>` while an
upload is in flight). An S3-compatible backend implements the same Protocol (a staged upload maps to a
multipart upload, `finish` to its completion after the hash check).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from spacehub.errors import InvalidInput, NotFound, PayloadTooLarge

OID = re.compile(r"[0-9a-f]{64}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_CHUNK = 1024 * 1024


def check_oid(oid: str) -> str:
    if not isinstance(oid, str) or not OID.fullmatch(oid):
        raise InvalidInput(f"object id {oid!r} must be a sha256 in lower-case hex (64 characters)")
    return oid


@dataclass(frozen=True)
class StoredObject:
    oid: str
    size: int
    stored_at: float  # seconds since the epoch


class Staged(Protocol):
    """One upload in flight; `upload_id` names it across requests (a multipart upload's parts)."""

    upload_id: str

    def write(self, chunk: bytes) -> None: ...  # the next bytes, in order
    def write_at(self, offset: int, chunk: bytes) -> None: ...  # bytes at an offset (multipart parts)
    def finish(self, oid: str, size: int) -> None: ...  # verify and publish; InvalidInput if the bytes differ
    def abort(self) -> None: ...


class ObjectStore(Protocol):
    def size(self, oid: str) -> int | None: ...  # None: not stored
    def stage(self, max_bytes: int, upload_id: str | None = None) -> Staged: ...
    def read(self, oid: str, start: int = 0, length: int | None = None) -> Iterator[bytes]: ...
    def touch(self, oid: str) -> None: ...  # in use again: garbage collection's grace period starts anew
    def delete(self, oid: str) -> None: ...
    def objects(self) -> Iterator[StoredObject]: ...
    def remove_stale_uploads(self, older_than_s: float) -> int: ...


class LocalObjectStore:
    """Objects as files under `root`; written aside and renamed into place, so a reader never sees half one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._staging = self.root / "staging"

    def path_of(self, oid: str) -> Path:
        check_oid(oid)
        return self._objects / oid[:2] / oid[2:4] / oid

    def size(self, oid: str) -> int | None:
        try:
            return self.path_of(oid).stat().st_size
        except FileNotFoundError:
            return None

    def stage(self, max_bytes: int, upload_id: str | None = None) -> LocalStaged:
        reopened = upload_id is not None
        if upload_id is None:
            upload_id = secrets.token_hex(16)
        elif not _UPLOAD_ID.fullmatch(upload_id):
            raise InvalidInput("malformed upload id")
        self._staging.mkdir(parents=True, exist_ok=True)
        staged = LocalStaged(self, upload_id, self._staging / upload_id, max_bytes)
        if reopened:  # earlier requests wrote to it: its hash is taken from the file at `finish`
            staged.forget_hash()
        return staged

    def read(self, oid: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        try:
            handle = open(self.path_of(oid), "rb")  # noqa: SIM115 - closed when the generator ends
        except FileNotFoundError:
            raise NotFound(f"object {oid} is not stored") from None
        return _chunks(handle, start, length)

    def touch(self, oid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path_of(oid))

    def delete(self, oid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_of(oid).unlink()

    def objects(self) -> Iterator[StoredObject]:
        if not self._objects.is_dir():
            return
        for path in self._objects.glob("*/*/*"):
            if OID.fullmatch(path.name):
                with contextlib.suppress(FileNotFoundError):
                    info = path.stat()
                    yield StoredObject(path.name, info.st_size, info.st_mtime)

    def remove_stale_uploads(self, older_than_s: float) -> int:
        """Staging files of uploads abandoned midway; returns how many were removed."""
        removed, cutoff = 0, time.time() - older_than_s
        if not self._staging.is_dir():
            return 0
        for path in self._staging.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def _publish(self, staging: Path, oid: str) -> None:
        target = self.path_of(oid)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # stored already (another repo, another user): keep one copy
            staging.unlink()
            os.utime(target)  # a fresh upload must not be collected as unreferenced before its commit
            return
        os.replace(staging, target)


class LocalStaged:
    def __init__(self, store: LocalObjectStore, upload_id: str, path: Path, max_bytes: int) -> None:
        self.upload_id = upload_id
        self._store = store
        self._path = path
        self._max_bytes = max_bytes
        self._hasher: hashlib._Hash | None = hashlib.sha256()  # None once a write was out of order
        self._written = 0  # bytes written in order (write)

    def write(self, chunk: bytes) -> None:
        self._check(self._written + len(chunk))
        with open(self._path, "ab") as out:
            out.write(chunk)
        self._written += len(chunk)
        if self._hasher is not None:
            self._hasher.update(chunk)

    def forget_hash(self) -> None:
        self._hasher = None

    def write_at(self, offset: int, chunk: bytes) -> None:
        if offset < 0:
            raise InvalidInput("negative offset")
        self._check(offset + len(chunk))
        self._hasher = None
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.pwrite(fd, chunk, offset)
        finally:
            os.close(fd)

    def finish(self, oid: str, size: int) -> None:
        check_oid(oid)
        try:
            actual_size = self._path.stat().st_size
        except FileNotFoundError:
            actual_size = 0
            self._path.touch()
        try:
            if actual_size != size:
                raise InvalidInput(f"object {oid}: received {actual_size} bytes, {size} were declared")
            digest = self._hasher.hexdigest() if self._hasher is not None else _sha256_of(self._path)
            if digest != oid:
                raise InvalidInput(f"object {oid}: the bytes received hash to sha256 {digest}, not to the "
                                   "declared one")
            self._store._publish(self._path, oid)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _check(self, end: int) -> None:
        if end > self._max_bytes:
            self.abort()
            raise PayloadTooLarge(f"the upload is over its limit of {self._max_bytes} bytes")


def _sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _chunks(handle: IO[bytes], start: int, length: int | None) -> Iterator[bytes]:
    try:
        handle.seek(start)
        remaining = length
        while remaining is None or remaining > 0:
            chunk = handle.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()
