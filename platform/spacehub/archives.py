"""Unpacking uploads (zip, tar, tar.gz archives and multipart files) as the hostile input they are.

Every entry is checked before a byte of it is written (reference/security.md §2):

- its path is relative, normalised, valid UTF-8, with no `..` component, NUL or control character, backslash
  or drive letter, and no `.git` component in any case (nor as NTFS reads it: `.git.`, `.git `, `git~1`);
- it is a regular file or a directory. Symbolic and hard links, devices, FIFOs and sparse files are refused
  outright, never "made safe": library filters have had bypass after bypass;
- caps: the compressed body (`max_upload_bytes`), the number of entries, directories included
  (`max_entries`), the bytes of one file (`max_file_bytes`) and of the whole tree (`max_tree_bytes`).
  Bytes are counted as they are written, never taken from the sizes an archive declares (zip bombs lie
  about them). A path may appear once.

Directories are implicit (git tracks none), so directory entries are checked and counted but never created.
Files are written 0644, or 0755 when the archive marks them executable; owners and times are dropped.

Two decisions about what an upload means:

- **One common top-level folder is stripped.** When every file sits under the same single folder
  (`hello/app.py`, `hello/README.md`), that folder is removed (`app.py`, `README.md`).
  `zip -r hello.zip hello`, Finder's "Compress", GitHub's "Download ZIP" and browser folder uploads all wrap
  the tree this way, while a space whose every file lives in one folder cannot run anyway (its README.md must
  sit at the root). Only one level goes.
- **`__MACOSX/` is skipped.** macOS's archiver puts resource-fork copies of every file there; they are never
  part of the app. Its entries still count towards the caps.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Final, Protocol, Self, cast

from spacehub.errors import PayloadTooLarge, UnsafeUpload

CHUNK_BYTES: Final = 64 * 1024
MAX_PATH_BYTES: Final = 1024
MAX_NAME_BYTES: Final = 255  # NAME_MAX on Linux: a longer name could not be written anyway
MAX_TAR_META_BYTES: Final = 64 * 1024  # pax and GNU long-name headers: tarfile reads them whole into memory
# Tar stream bytes one entry may take beyond its data: its header, padding, pax or long-name headers.
TAR_OVERHEAD_PER_ENTRY: Final = 8 * 1024 + MAX_TAR_META_BYTES
MACOS_METADATA_FOLDER: Final = "__MACOSX"

_HEAD_BYTES = 512
_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REFUSED_COMPRESSION = {  # magic bytes of compressors whose bombs cannot be decoded in bounded memory here
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int
    max_tree_bytes: int
    max_file_bytes: int
    max_entries: int


@dataclass
class UploadCounter:
    """What one upload has used so far, shared by all of its entries (archive members or multipart files).

    `files_are_body` is true for multipart uploads, whose files are the request body: their bytes then count
    towards `max_upload_bytes` too. An archive's body is counted on its compressed stream instead.
    """

    files_are_body: bool = True
    entries: int = field(default=0, init=False)
    files: int = field(default=0, init=False)
    bytes_written: int = field(default=0, init=False)
    _file_paths: set[str] = field(default_factory=set, init=False, repr=False)
    _folder_paths: set[str] = field(default_factory=set, init=False, repr=False)

    def count_entry(self, entry: str, limits: UploadLimits) -> None:
        self.entries += 1
        if self.entries > limits.max_entries:
            raise PayloadTooLarge(f"entry {entry!r}: the upload has more than {limits.max_entries} entries")

    def claim_path(self, entry: str, path: str) -> None:
        """Reserve `path` for a file: once only, and never both a file and a folder."""
        if path in self._file_paths:
            raise UnsafeUpload(f"entry {entry!r}: duplicate path {path!r}")
        if path in self._folder_paths:
            raise UnsafeUpload(f"entry {entry!r}: {path!r} is already a folder of other entries")
        folders = _parent_folders(path)
        clash = next((folder for folder in folders if folder in self._file_paths), None)
        if clash is not None:
            raise UnsafeUpload(f"entry {entry!r}: its folder {clash!r} is already a file")
        self._file_paths.add(path)
        self._folder_paths.update(folders)
        self.files += 1

    def count_bytes(self, entry: str, size: int, limits: UploadLimits) -> None:
        self.bytes_written += size
        if self.bytes_written > limits.max_tree_bytes:
            raise PayloadTooLarge(
                f"entry {entry!r}: the unpacked upload is over the limit of {limits.max_tree_bytes} bytes")
        if self.files_are_body and self.bytes_written > limits.max_upload_bytes:
            raise PayloadTooLarge(
                f"entry {entry!r}: the upload is over the limit of {limits.max_upload_bytes} bytes")


# Paths ----------------------------------------------------------------------------------------------------


def check_relpath(path: str) -> str:
    """The normalised form of an upload path (`./a//b/` -> `a/b`); UnsafeUpload naming the rule it breaks."""
    rule = _path_violation(path)
    if rule is not None:
        raise UnsafeUpload(f"entry {path!r}: {rule}")
    return "/".join(_components(path))


def _path_violation(path: str) -> str | None:
    if "\x00" in path:
        return "NUL byte in the path"
    if _CONTROL.search(path):
        return "control character in the path"
    if "\\" in path:
        return "backslash in the path (a Windows separator)"
    if path.startswith("/"):
        return "absolute path"
    if _DRIVE.match(path):
        return "Windows drive path"
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        return "the path is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"path longer than {MAX_PATH_BYTES} bytes"
    components = _components(path)
    if not components:
        return "empty path"
    return next(filter(None, map(_component_violation, components)), None)


def _component_violation(component: str) -> str | None:
    if component == "..":
        return "path escapes the repository"
    if _is_git_folder_name(component):
        return ".git folders are not allowed"
    if len(component.encode("utf-8")) > MAX_NAME_BYTES:
        return f"name longer than {MAX_NAME_BYTES} bytes"
    return None


def _is_git_folder_name(component: str) -> bool:
    # Windows drops trailing dots and spaces and knows `.git` by its 8.3 name: clones there stay safe too.
    lowered = component.lower()
    return lowered.rstrip(". ") == ".git" or lowered == "git~1"


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _parent_folders(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


def _is_macos_metadata(path: str) -> bool:
    return path.split("/", 1)[0] == MACOS_METADATA_FOLDER


# Public entry points --------------------------------------------------------------------------------------


def extract_archive(fileobj: BinaryIO, filename: str, dest: Path, limits: UploadLimits) -> int:
    """Unpack a zip, tar or tar.gz upload into the empty folder `dest`; return the number of files.

    The format is told by magic bytes (the name only vouches for old tars without one). On any refusal raises
    UnsafeUpload or PayloadTooLarge, naming the entry and the rule, and leaves `dest` empty.
    """
    _require_empty_folder(dest)
    try:
        with ExitStack() as stack:
            body = _seekable_body(fileobj, filename, dest.parent, limits, stack)
            counter = UploadCounter(files_are_body=False)
            _extract_by_kind(body, filename, dest, limits, counter)
        strip_common_folder(dest)
        return counter.files
    except BaseException:
        _empty_folder(dest)
        raise


def add_file(dest: Path, relpath: str, fileobj: BinaryIO, limits: UploadLimits,
             counter: UploadCounter) -> None:
    """Write one uploaded file at `relpath` under `dest` (multipart; folder uploads send `dir/sub/f.py`).

    Call `strip_common_folder(dest)` after the last file when the files came from a browser folder upload.
    A refused file leaves nothing behind; the caller discards `dest` after any error.
    """
    counter.count_entry(relpath, limits)
    path = check_relpath(relpath)
    counter.claim_path(relpath, path)
    _write_file(fileobj, dest, path, executable=False, entry=relpath, limits=limits, counter=counter)


def strip_common_folder(dest: Path) -> bool:
    """Lift the contents of `dest`'s only child up one level when that child is a folder; say if it did."""
    children = list(dest.iterdir())
    if len(children) != 1 or children[0].is_symlink() or not children[0].is_dir():
        return False
    top = children[0]
    # Park the folder under a fresh name first: it may hold a child of its own name (`hello/hello/x`).
    holding = dest / _unused_name({child.name for child in top.iterdir()} | {top.name})
    top.rename(holding)
    for child in holding.iterdir():
        child.rename(dest / child.name)
    holding.rmdir()
    return True


# Bodies and formats ---------------------------------------------------------------------------------------


_CORRUPT_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, struct.error)


def _extract_by_kind(body: BinaryIO, filename: str, dest: Path, limits: UploadLimits,
                     counter: UploadCounter) -> None:
    start = body.tell()
    head = body.read(_HEAD_BYTES)
    body.seek(start)
    kind = _archive_kind(head, filename)
    try:
        if kind == "zip":
            _extract_zip(body, filename, dest, limits, counter)
        else:
            _extract_tar(body, filename, dest, limits, counter, gzipped=kind == "tar.gz")
    except _CORRUPT_ARCHIVE_ERRORS as exc:
        raise UnsafeUpload(f"upload {filename!r}: not a readable {kind} archive ({exc})") from exc


def _archive_kind(head: bytes, filename: str) -> str:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head[257:262] == b"ustar":
        return "tar"
    for magic, name in _REFUSED_COMPRESSION.items():
        if head.startswith(magic):
            raise UnsafeUpload(
                f"upload {filename!r}: {name} archives are not accepted; send a zip, .tar or .tar.gz")
    if filename.lower().endswith(".tar"):  # pre-POSIX tars carry no magic
        return "tar"
    raise UnsafeUpload(f"upload {filename!r}: not a zip, tar or tar.gz archive")


def _seekable_body(fileobj: BinaryIO, filename: str, spool_dir: Path, limits: UploadLimits,
                   stack: ExitStack) -> BinaryIO:
    """The upload as a seekable file no bigger than the cap: zip needs to seek, and the size is then known."""
    too_large = PayloadTooLarge(
        f"upload {filename!r}: the body is over the limit of {limits.max_upload_bytes} bytes")
    if _is_seekable(fileobj):
        start = fileobj.tell()
        size = fileobj.seek(0, os.SEEK_END) - start
        fileobj.seek(start)
        if size > limits.max_upload_bytes:
            raise too_large
        return fileobj
    spool = stack.enter_context(tempfile.TemporaryFile(dir=spool_dir))  # noqa: SIM115 (on disk: /tmp may be RAM)
    size = 0
    while chunk := fileobj.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limits.max_upload_bytes:
            raise too_large
        spool.write(chunk)
    spool.seek(0)
    return cast(BinaryIO, spool)


def _is_seekable(fileobj: BinaryIO) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


# Zip ------------------------------------------------------------------------------------------------------


_ZIP_END = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_ZIP_CENTRAL_ENTRY = struct.Struct("<4s4B4HL2L5H2L")  # one central directory record, names follow
_ZIP_CENTRAL_SIGNATURE = b"PK\x01\x02"
_ZIP_LOCAL_HEADER_BYTES = 30
_ZIP_ENCRYPTED_FLAG = 0x1
_ZIP_UTF8_FLAG = 0x800
_ZIP_ACCEPTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def _extract_zip(body: BinaryIO, filename: str, dest: Path, limits: UploadLimits,
                 counter: UploadCounter) -> None:
    _check_zip_entry_count(body, limits)
    with zipfile.ZipFile(body) as archive:
        members = archive.infolist()
        _reject_overlapping_members(members, archive.start_dir)
        for member in members:
            _extract_zip_member(archive, member, dest, limits, counter)


def _check_zip_entry_count(body: BinaryIO, limits: UploadLimits) -> None:
    """Count central directory records before zipfile builds an object for each of them: a few hundred MB of
    tiny records would otherwise cost gigabytes of memory before any cap is looked at."""
    start, size = _zip_central_directory(body)
    position, entries = start, 0
    while position < start + size:
        body.seek(position)
        record = _ZIP_CENTRAL_ENTRY.unpack(_read_exactly(body, _ZIP_CENTRAL_ENTRY.size))
        if record[0] != _ZIP_CENTRAL_SIGNATURE:
            raise zipfile.BadZipFile("bad central directory record")
        name_length, extra_length, comment_length = record[12:15]
        entries += 1
        if entries > limits.max_entries:
            name = body.read(name_length).decode("utf-8", "replace")
            raise PayloadTooLarge(f"entry {name!r}: the upload has more than {limits.max_entries} entries")
        position += _ZIP_CENTRAL_ENTRY.size + name_length + extra_length + comment_length


def _zip_central_directory(body: BinaryIO) -> tuple[int, int]:
    """(offset, size) of the central directory, located from the end record the way zipfile locates it."""
    file_size = body.seek(0, os.SEEK_END)
    tail_size = min(file_size, _ZIP_END.size + 0xFFFF)  # the record ends with a comment of up to 64 KiB
    body.seek(file_size - tail_size)
    tail = body.read(tail_size)
    at = tail.rfind(_ZIP_END_SIGNATURE)
    if at < 0 or at + _ZIP_END.size > len(tail):
        raise zipfile.BadZipFile("no end of central directory record")
    end_position = file_size - tail_size + at
    directory_size = _ZIP_END.unpack_from(tail, at)[5]
    zip64 = _zip64_directory_size(body, end_position)
    if zip64 is not None:
        return end_position - _ZIP64_LOCATOR.size - _ZIP64_END.size - zip64, zip64
    return end_position - directory_size, directory_size


def _zip64_directory_size(body: BinaryIO, end_position: int) -> int | None:
    locator_position = end_position - _ZIP64_LOCATOR.size
    record_position = locator_position - _ZIP64_END.size
    if record_position < 0:
        return None
    body.seek(locator_position)
    if _ZIP64_LOCATOR.unpack(_read_exactly(body, _ZIP64_LOCATOR.size))[0] != _ZIP64_LOCATOR_SIGNATURE:
        return None
    body.seek(record_position)
    record = _ZIP64_END.unpack(_read_exactly(body, _ZIP64_END.size))
    if record[0] != _ZIP64_END_SIGNATURE:
        raise zipfile.BadZipFile("bad zip64 end of central directory record")
    return int(record[8])


def _read_exactly(body: BinaryIO, size: int) -> bytes:
    data = body.read(size)
    if len(data) != size:
        raise zipfile.BadZipFile("truncated zip archive")
    return data


def _reject_overlapping_members(members: list[zipfile.ZipInfo], directory_start: int) -> None:
    """Refuse entries whose data runs into the next entry: the trick behind non-recursive zip bombs, where
    thousands of entries all decompress one shared kernel (Fifield, "A better zip bomb")."""
    ordered = sorted(members, key=lambda member: member.header_offset)
    following = [member.header_offset for member in ordered[1:]] + [directory_start]
    for member, next_start in zip(ordered, following, strict=True):
        if _zip_member_end(member) > next_start:
            raise UnsafeUpload(
                f"entry {member.orig_filename!r}: its data overlaps another entry (a zip bomb)")


def _zip_member_end(member: zipfile.ZipInfo) -> int:
    # A lower bound: the local header also holds an extra field of its own length.
    encoding = "utf-8" if member.flag_bits & _ZIP_UTF8_FLAG else "cp437"
    name_bytes = len(member.orig_filename.encode(encoding, "replace"))
    return member.header_offset + _ZIP_LOCAL_HEADER_BYTES + name_bytes + member.compress_size


def _extract_zip_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path, limits: UploadLimits,
                        counter: UploadCounter) -> None:
    entry = member.orig_filename  # zipfile's `filename` silently cuts the name at a NUL byte
    counter.count_entry(entry, limits)
    rule = _zip_member_violation(member)
    if rule is not None:
        raise UnsafeUpload(f"entry {entry!r}: {rule}")
    path = check_relpath(entry)
    if _is_zip_folder(member) or _is_macos_metadata(path):
        return
    counter.claim_path(entry, path)
    executable = bool(_zip_unix_mode(member) & stat.S_IXUSR)
    with archive.open(member) as source:
        _write_file(cast(BinaryIO, source), dest, path, executable=executable, entry=entry, limits=limits,
                    counter=counter)


def _zip_member_violation(member: zipfile.ZipInfo) -> str | None:
    file_type = stat.S_IFMT(_zip_unix_mode(member))
    if file_type == stat.S_IFLNK:
        return "symbolic links are not allowed"
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special files (devices, FIFOs, sockets) are not allowed"
    if member.flag_bits & _ZIP_ENCRYPTED_FLAG:
        return "encrypted entries are not accepted"
    if member.compress_type not in _ZIP_ACCEPTED_COMPRESSION:
        # bzip2 and lzma entries are decoded without an output bound: one read could fill memory.
        return f"compression method {member.compress_type} is not accepted (use deflate)"
    return None


def _zip_unix_mode(member: zipfile.ZipInfo) -> int:
    return member.external_attr >> 16


def _is_zip_folder(member: zipfile.ZipInfo) -> bool:
    return member.orig_filename.endswith("/") or stat.S_ISDIR(_zip_unix_mode(member))


# Tar ------------------------------------------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses oversized pax and GNU long-name headers: tarfile would read them whole into memory."""

    _META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                   tarfile.GNUTYPE_LONGLINK)

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in cls._META_TYPES and info.size > MAX_TAR_META_BYTES:
            raise tarfile.HeaderError(
                f"extended header of {info.size} bytes (the limit is {MAX_TAR_META_BYTES})")
        return info


def _extract_tar(body: BinaryIO, filename: str, dest: Path, limits: UploadLimits, counter: UploadCounter, *,
                 gzipped: bool) -> None:
    stream: _Readable = _GunzipReader(body) if gzipped else body
    # Cap the decompressed stream too: data tarfile skips (`__MACOSX/`) is never written, so never counted.
    cap = limits.max_tree_bytes + (limits.max_entries + 2) * TAR_OVERHEAD_PER_ENTRY
    message = f"upload {filename!r}: the unpacked archive stream is over {cap} bytes"
    capped = _CappedReader(stream, cap, message)
    # Streaming mode: members are read in order, once, and a .tar.gz is never held in memory.
    with tarfile.open(fileobj=cast(IO[bytes], capped), mode="r|", tarinfo=_BoundedTarInfo) as archive:
        for member in archive:
            _extract_tar_member(archive, member, dest, limits, counter)


def _extract_tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, limits: UploadLimits,
                        counter: UploadCounter) -> None:
    entry = member.name
    counter.count_entry(entry, limits)
    rule = _tar_member_violation(member)
    if rule is not None:
        raise UnsafeUpload(f"entry {entry!r}: {rule}")
    path = check_relpath(entry)
    if member.isdir() or _is_macos_metadata(path):
        return
    if member.size > limits.max_file_bytes:  # a tar member holds exactly its declared size: refuse it unread
        raise PayloadTooLarge(f"entry {entry!r}: the file is over the limit of {limits.max_file_bytes} bytes")
    counter.claim_path(entry, path)
    source = archive.extractfile(member)
    if source is None:  # only links and special members have no data, and those are refused above
        raise UnsafeUpload(f"entry {entry!r}: has no readable data")
    with source:
        _write_file(cast(BinaryIO, source), dest, path, executable=bool(member.mode & stat.S_IXUSR),
                    entry=entry, limits=limits, counter=counter)


def _tar_member_violation(member: tarfile.TarInfo) -> str | None:
    if member.issym():
        return "symbolic links are not allowed"
    if member.islnk():
        return "hard links are not allowed"
    if member.ischr() or member.isblk():
        return "device files are not allowed"
    if member.isfifo():
        return "FIFOs are not allowed"
    if member.issparse():
        return "sparse files are not allowed"
    if not (member.isfile() or member.isdir()):
        return f"entry type {member.type!r} is not allowed"
    return None


class _CappedReader:
    """Passes reads through and raises PayloadTooLarge once more than `cap` bytes have gone by."""

    def __init__(self, raw: _Readable, cap: int, message: str) -> None:
        self._raw, self._cap, self._message, self._seen = raw, cap, message, 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self._seen += len(data)
        if self._seen > self._cap:
            raise PayloadTooLarge(self._message)
        return data


class _GunzipReader:
    """Decompresses a gzip stream (`cat a.gz b.gz` included) with each read's output bounded by its size.

    tarfile's own gzip layer inflates whole input buffers at once; with this one a gzip bomb never costs more
    memory than a single read asks for.
    """

    _GZIP_WBITS = 16 + zlib.MAX_WBITS

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._inflater = zlib.decompressobj(self._GZIP_WBITS)
        self._pending = b""  # compressed bytes read but not yet inflated

    def read(self, size: int = -1, /) -> bytes:
        wanted = size if size > 0 else CHUNK_BYTES
        while True:
            if not self._pending:
                self._pending = self._raw.read(CHUNK_BYTES)
                if not self._pending:
                    return b""
            if self._inflater.eof:
                if not self._pending.strip(b"\x00"):  # zero padding after the last member, as gzip allows
                    self._pending = b""
                    continue
                self._inflater = zlib.decompressobj(self._GZIP_WBITS)
            data = self._inflater.decompress(self._pending, wanted)
            self._pending = self._inflater.unconsumed_tail or self._inflater.unused_data
            if data:
                return data


# Writing --------------------------------------------------------------------------------------------------


def _write_file(source: BinaryIO, dest: Path, path: str, *, executable: bool, entry: str,
                limits: UploadLimits, counter: UploadCounter) -> None:
    """Stream one checked entry to `dest/path`, counting the bytes actually written against every cap."""
    target = dest / path
    target.parent.mkdir(parents=True, exist_ok=True)
    _require_inside(dest, target.parent, entry)
    mode = 0o755 if executable else 0o644
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as out:
        try:
            os.fchmod(out.fileno(), mode)  # the mode given to open() is cut by the umask
            for chunk in _capped_chunks(source, entry, limits, counter):
                out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)  # a refused file leaves nothing behind
            raise


def _capped_chunks(source: BinaryIO, entry: str, limits: UploadLimits,
                   counter: UploadCounter) -> Iterator[bytes]:
    size = 0
    while chunk := source.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limits.max_file_bytes:
            raise PayloadTooLarge(
                f"entry {entry!r}: the file is over the limit of {limits.max_file_bytes} bytes")
        counter.count_bytes(entry, len(chunk), limits)
        yield chunk


def _require_inside(dest: Path, folder: Path, entry: str) -> None:
    # Belt and braces: checked paths and a link-free `dest` cannot escape, and this proves it on disk.
    root = os.path.realpath(dest)
    resolved = os.path.realpath(folder)
    if resolved != root and not resolved.startswith(root + os.sep):
        raise UnsafeUpload(f"entry {entry!r}: path escapes the repository")


def _require_empty_folder(dest: Path) -> None:
    if not dest.is_dir() or dest.is_symlink() or any(dest.iterdir()):
        raise ValueError(f"{dest} must be an existing, empty folder")


def _empty_folder(dest: Path) -> None:
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _unused_name(taken: set[str]) -> str:
    while True:
        name = f".spacehub-strip-{uuid.uuid4().hex}"
        if name not in taken:
            return name


__all__ = ["UploadCounter", "UploadLimits", "add_file", "check_relpath", "extract_archive",
           "strip_common_folder"]
