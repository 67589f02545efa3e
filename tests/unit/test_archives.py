"""Upload extraction against normal archives and every attack in reference/security.md §2."""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from spacehub.archives import (
    UploadCounter,
    UploadLimits,
    add_file,
    check_relpath,
    extract_archive,
    strip_common_folder,
)
from spacehub.errors import PayloadTooLarge, UnsafeUpload

LIMITS = UploadLimits(max_upload_bytes=1_000_000, max_tree_bytes=1_000_000, max_file_bytes=100_000,
                      max_entries=20)

# Archive builders -------------------------------------------------------------------------------------------------


def zip_of(files: Iterable[tuple[str | zipfile.ZipInfo, bytes]],
           compression: int = zipfile.ZIP_DEFLATED) -> io.BytesIO:
    body = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(body, "w", compression) as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests want
        for name, data in files:
            archive.writestr(name, data)
    body.seek(0)
    return body


def zip_symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def tar_of(members: Iterable[tarfile.TarInfo | tuple[str, bytes]], *, gz: bool = False) -> io.BytesIO:
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w:gz" if gz else "w") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    body.seek(0)
    return body


def tar_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


class NonSeekable(io.RawIOBase):
    """A request body as a socket gives it: read once, no seeking."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# Helpers -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


def tree_of(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def assert_refused(body: io.IOBase, dest: Path, entry: str, rule: str, *, error: type[Exception] = UnsafeUpload,
                   limits: UploadLimits = LIMITS, filename: str = "upload") -> None:
    with pytest.raises(error) as caught:
        extract_archive(body, filename, dest, limits)  # type: ignore[arg-type]
    message = str(caught.value)
    assert repr(entry) in message, message
    assert rule in message, message
    assert list(dest.iterdir()) == [], "a refused upload must leave the staging folder empty"


GOOD = ("aaa-good.txt", b"fine")  # written before each attack, so the cleanup is really exercised

# Normal trees -----------------------------------------------------------------------------------------------------


def test_zip_of_a_normal_tree(dest: Path) -> None:
    executable = zipfile.ZipInfo("run.sh")
    executable.create_system = 3
    executable.external_attr = (stat.S_IFREG | 0o755) << 16
    body = zip_of([("app.py", b"print('hi')\n"), ("src/", b""), ("src/util.py", b"x = 1\n"),
                   (executable, b"#!/bin/sh\n"), ("README.md", b"# hi\n")])
    assert extract_archive(body, "space.zip", dest, LIMITS) == 4
    assert tree_of(dest) == {"README.md": b"# hi\n", "app.py": b"print('hi')\n", "run.sh": b"#!/bin/sh\n",
                             "src/util.py": b"x = 1\n"}
    assert (dest / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (dest / "app.py").stat().st_mode & 0o777 == 0o644


def test_tar_gz_of_a_normal_tree_is_told_by_its_magic_bytes(dest: Path) -> None:
    body = tar_of([tar_member("src", tarfile.DIRTYPE), ("src/util.py", b"x = 1\n"), ("app.py", b"hi\n")], gz=True)
    assert extract_archive(body, "upload", dest, LIMITS) == 2  # no name hint at all
    assert tree_of(dest) == {"app.py": b"hi\n", "src/util.py": b"x = 1\n"}


def test_plain_tar_even_when_misnamed(dest: Path) -> None:
    assert extract_archive(tar_of([("app.py", b"hi\n")]), "space.zip", dest, LIMITS) == 1
    assert tree_of(dest) == {"app.py": b"hi\n"}


def test_concatenated_gzip_members(dest: Path) -> None:
    raw = tar_of([("app.py", b"hi\n")]).getvalue()
    body = io.BytesIO(gzip.compress(raw[:512]) + gzip.compress(raw[512:]))
    assert extract_archive(body, "upload", dest, LIMITS) == 1


def test_non_seekable_body_is_spooled(dest: Path) -> None:
    body = NonSeekable(zip_of([("app.py", b"hi\n")]).getvalue())
    assert extract_archive(body, "upload", dest, LIMITS) == 1  # type: ignore[arg-type]
    assert tree_of(dest) == {"app.py": b"hi\n"}


def test_one_common_top_folder_is_stripped(dest: Path) -> None:
    body = zip_of([("hello/", b""), ("hello/app.py", b"a"), ("hello/README.md", b"r"), ("hello/src/x.py", b"x")])
    assert extract_archive(body, "hello.zip", dest, LIMITS) == 3
    assert tree_of(dest) == {"README.md": b"r", "app.py": b"a", "src/x.py": b"x"}


def test_only_one_level_is_stripped_even_if_it_repeats_the_name(dest: Path) -> None:
    body = tar_of([("hello/hello/app.py", b"a")], gz=True)
    extract_archive(body, "hello.tgz", dest, LIMITS)
    assert tree_of(dest) == {"hello/app.py": b"a"}


@pytest.mark.parametrize("files", [
    [("app.py", b"a"), ("src/x.py", b"x")],  # two top-level entries
    [("app.py", b"a")],  # a single file is not a folder
])
def test_nothing_is_stripped_without_one_common_folder(dest: Path, files: list[tuple[str, bytes]]) -> None:
    extract_archive(zip_of(files), "x.zip", dest, LIMITS)
    assert tree_of(dest) == dict(files)


def test_macos_metadata_is_skipped_and_does_not_block_stripping(dest: Path) -> None:
    body = zip_of([("hello/app.py", b"a"), ("__MACOSX/hello/._app.py", b"\x00\x05junk")])
    assert extract_archive(body, "hello.zip", dest, LIMITS) == 1
    assert tree_of(dest) == {"app.py": b"a"}


# Path attacks -----------------------------------------------------------------------------------------------------

PATH_ATTACKS = [
    ("../x", "path escapes the repository"),
    ("a/../../x", "path escapes the repository"),
    ("/etc/x", "absolute path"),
    ("C:/x", "Windows drive path"),
    ("a\\..\\..\\x", "backslash"),
    (".git/config", ".git folders are not allowed"),
    ("sub/.GIT/x", ".git folders are not allowed"),
    ("sub/.git./hooks/x", ".git folders are not allowed"),
    ("GIT~1/config", ".git folders are not allowed"),
    ("a/\x07bell", "control character"),
]


@pytest.mark.parametrize(("name", "rule"), PATH_ATTACKS)
def test_zip_path_attacks(dest: Path, name: str, rule: str) -> None:
    assert_refused(zip_of([GOOD, (name, b"pwned")]), dest, name, rule)


@pytest.mark.parametrize(("name", "rule"), PATH_ATTACKS)
def test_tar_gz_path_attacks(dest: Path, name: str, rule: str) -> None:
    assert_refused(tar_of([GOOD, (name, b"pwned")], gz=True), dest, name, rule)


def test_git_folder_entry_itself_is_refused(dest: Path) -> None:
    assert_refused(tar_of([GOOD, tar_member(".git", tarfile.DIRTYPE)]), dest, ".git", ".git folders")


# Links and special files ------------------------------------------------------------------------------------------


def test_zip_symlink(dest: Path) -> None:
    body = zip_of([GOOD, (zip_symlink("link", "/etc/passwd"), b"/etc/passwd")])
    assert_refused(body, dest, "link", "symbolic links are not allowed")


def test_zip_device_file(dest: Path) -> None:
    info = zipfile.ZipInfo("dev")
    info.create_system = 3
    info.external_attr = (stat.S_IFCHR | 0o666) << 16
    assert_refused(zip_of([GOOD, (info, b"")]), dest, "dev", "special files")


@pytest.mark.parametrize(("kind", "linkname", "rule"), [
    (tarfile.SYMTYPE, "/etc/passwd", "symbolic links are not allowed"),
    (tarfile.SYMTYPE, "aaa-good.txt", "symbolic links are not allowed"),
    (tarfile.LNKTYPE, "aaa-good.txt", "hard links are not allowed"),
    (tarfile.CHRTYPE, "", "device files are not allowed"),
    (tarfile.BLKTYPE, "", "device files are not allowed"),
    (tarfile.FIFOTYPE, "", "FIFOs are not allowed"),
])
def test_tar_links_and_special_files(dest: Path, kind: bytes, linkname: str, rule: str) -> None:
    assert_refused(tar_of([GOOD, tar_member("special", kind, linkname)], gz=True), dest, "special", rule)


# Duplicates and clashes -------------------------------------------------------------------------------------------


def test_zip_duplicate_entries(dest: Path) -> None:
    assert_refused(zip_of([GOOD, ("app.py", b"1"), ("app.py", b"2")]), dest, "app.py", "duplicate path")


def test_tar_duplicate_entries_after_normalisation(dest: Path) -> None:
    assert_refused(tar_of([GOOD, ("src/app.py", b"1"), ("./src//app.py", b"2")]), dest, "./src//app.py",
                   "duplicate path")


def test_file_and_folder_of_the_same_name(dest: Path) -> None:
    assert_refused(tar_of([GOOD, ("lib", b"1"), ("lib/x.py", b"2")]), dest, "lib/x.py", "is already a file")


# Caps and bombs ---------------------------------------------------------------------------------------------------


def test_too_many_entries_zip(dest: Path) -> None:
    files = [(f"f{number:02}.txt", b"x") for number in range(LIMITS.max_entries + 1)]
    assert_refused(zip_of(files), dest, "f20.txt", "more than 20 entries", error=PayloadTooLarge)


def test_too_many_entries_zip64_is_counted_before_zipfile_parses_the_directory(dest: Path) -> None:
    # Over 65535 entries zip needs its zip64 end record; counting must follow it to the real directory.
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as archive:
        for number in range(0x10000 + 1):
            archive.writestr(f"d/{number}", b"")
    assert b"PK\x06\x06" in body.getvalue()
    body.seek(0)
    limits = UploadLimits(max_upload_bytes=10**8, max_tree_bytes=10**8, max_file_bytes=10**8, max_entries=20)
    assert_refused(body, dest, "d/20", "more than 20 entries", error=PayloadTooLarge, limits=limits)


def test_too_many_entries_tar_counts_directories(dest: Path) -> None:
    members = [tar_member(f"d{number:02}", tarfile.DIRTYPE) for number in range(LIMITS.max_entries)]
    assert_refused(tar_of([*members, ("last.txt", b"x")]), dest, "last.txt", "more than 20 entries",
                   error=PayloadTooLarge)


@pytest.mark.parametrize("gz", [False, True])
def test_file_over_the_per_file_cap_tar(dest: Path, gz: bool) -> None:
    big = b"\x00" * (LIMITS.max_file_bytes + 1)
    assert_refused(tar_of([GOOD, ("big.bin", big)], gz=gz), dest, "big.bin", "file is over the limit",
                   error=PayloadTooLarge)


def test_file_over_the_per_file_cap_zip(dest: Path) -> None:
    big = b"\x00" * (LIMITS.max_file_bytes + 1)
    assert_refused(zip_of([GOOD, ("big.bin", big)]), dest, "big.bin", "file is over the limit",
                   error=PayloadTooLarge)


def test_zip_bomb_total_over_the_tree_cap(dest: Path) -> None:
    # Each file passes the per-file cap and the body is tiny; together they unpack past the tree cap.
    files = [(f"part{number}.bin", b"\x00" * LIMITS.max_file_bytes) for number in range(11)]
    body = zip_of(files)
    assert len(body.getvalue()) < 10_000
    assert_refused(body, dest, "part10.bin", "unpacked upload is over the limit", error=PayloadTooLarge)


def test_zip_bomb_whose_declared_size_lies(dest: Path) -> None:
    body = zip_of([GOOD, ("bomb.bin", b"\x00" * 5_000_000)])
    lied = _patch_declared_sizes(body.getvalue(), "bomb.bin", 10)
    # The declared 10 bytes pass every cap: only counting real bytes (or the CRC over them) catches it.
    assert_refused(io.BytesIO(lied), dest, "bomb.bin", "not a readable zip archive")


def test_zip_bomb_with_overlapping_entries(dest: Path) -> None:
    # Two directory records share one local header: each "file" decompresses the same kernel again.
    body = _with_overlapping_copy(zip_of([("kernel.bin", b"\x00" * 50_000)]).getvalue(), "kernel.bin",
                                  "copy00.bin")
    assert_refused(io.BytesIO(body), dest, "kernel.bin", "overlaps another entry")


def test_gzip_bomb_tar_is_stopped_by_counting_written_bytes(dest: Path) -> None:
    limits = UploadLimits(max_upload_bytes=1_000_000, max_tree_bytes=300_000, max_file_bytes=100_000,
                          max_entries=1000)
    members = [(f"chunk{number:02}.bin", b"\x00" * 90_000) for number in range(10)]
    body = tar_of(members, gz=True)
    assert len(body.getvalue()) < 20_000
    assert_refused(body, dest, "chunk03.bin", "unpacked upload is over the limit", error=PayloadTooLarge,
                   limits=limits)


def test_oversized_pax_header_is_refused_before_it_is_read(dest: Path) -> None:
    info = tarfile.TarInfo("app.py")
    info.pax_headers = {"comment": "x" * 100_000}
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(b""))
    body.seek(0)
    assert_refused(body, dest, "upload", "extended header")


@pytest.mark.parametrize("seekable", [True, False])
def test_body_over_the_upload_cap(dest: Path, seekable: bool) -> None:
    limits = UploadLimits(max_upload_bytes=1000, max_tree_bytes=10**6, max_file_bytes=10**6, max_entries=10)
    raw = zip_of([("noise.bin", bytes(range(256)) * 20)], compression=zipfile.ZIP_STORED).getvalue()
    body = io.BytesIO(raw) if seekable else NonSeekable(raw)
    assert_refused(body, dest, "space.zip", "body is over the limit of 1000 bytes", error=PayloadTooLarge,
                   limits=limits, filename="space.zip")


# Formats refused ---------------------------------------------------------------------------------------------------


def test_bzip2_entries_in_a_zip_are_refused(dest: Path) -> None:
    body = zip_of([GOOD, ("app.py", b"x")], compression=zipfile.ZIP_BZIP2)
    assert_refused(body, dest, "aaa-good.txt", "compression method 12 is not accepted")


def test_bzip2_tar_is_refused(dest: Path) -> None:
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w:bz2") as archive:
        archive.addfile(tarfile.TarInfo("x"), io.BytesIO(b""))
    body.seek(0)
    assert_refused(body, dest, "x.tar.bz2", "bzip2 archives are not accepted", filename="x.tar.bz2")


@pytest.mark.parametrize(("data", "rule"), [
    (b"just some text, not an archive", "not a zip, tar or tar.gz archive"),
    (b"PK\x03\x04" + b"\x00" * 100, "not a readable zip archive"),
    (b"\x1f\x8b" + b"\x00" * 100, "not a readable tar.gz archive"),
])
def test_garbage_is_refused(dest: Path, data: bytes, rule: str) -> None:
    assert_refused(io.BytesIO(data), dest, "thing.zip", rule, filename="thing.zip")


def test_dest_must_be_an_empty_folder(dest: Path) -> None:
    (dest / "left-over").write_text("x")
    with pytest.raises(ValueError, match="empty folder"):
        extract_archive(zip_of([("a", b"")]), "x.zip", dest, LIMITS)
    assert (dest / "left-over").exists(), "a caller's mistake must never delete its files"


# check_relpath ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "normalised"), [
    ("app.py", "app.py"),
    ("./src//util.py", "src/util.py"),
    ("dir/", "dir"),
    ("a/./b", "a/b"),
    (".gitignore", ".gitignore"),
    (".github/workflows/x.yml", ".github/workflows/x.yml"),
    ("naïve/文件.txt", "naïve/文件.txt"),
])
def test_check_relpath_normalises(path: str, normalised: str) -> None:
    assert check_relpath(path) == normalised


@pytest.mark.parametrize(("path", "rule"), [
    ("", "empty path"),
    ("./", "empty path"),
    ("a\x00b", "NUL byte"),
    ("..", "path escapes"),
    ("a/..", "path escapes"),
    ("\\\\server\\share", "backslash"),
    ("c:x", "Windows drive path"),
    (".Git", ".git folders"),
    (".git ", ".git folders"),
    ("x" * 256, "name longer than 255 bytes"),
    ("a/" * 600, "path longer than 1024 bytes"),
    ("bad\udcffname", "not valid UTF-8"),
])
def test_check_relpath_refuses(path: str, rule: str) -> None:
    with pytest.raises(UnsafeUpload, match=rule) as caught:
        check_relpath(path)
    assert repr(path) in str(caught.value)


# Multipart files --------------------------------------------------------------------------------------------------


def test_add_file_writes_folders_and_strip_lifts_a_folder_upload(dest: Path) -> None:
    counter = UploadCounter()
    add_file(dest, "hello/app.py", io.BytesIO(b"a"), LIMITS, counter)
    add_file(dest, "hello/sub/x.py", io.BytesIO(b"x"), LIMITS, counter)
    assert counter.files == 2
    assert strip_common_folder(dest) is True
    assert tree_of(dest) == {"app.py": b"a", "sub/x.py": b"x"}


def test_add_file_refuses_attacks_and_duplicates(dest: Path) -> None:
    counter = UploadCounter()
    add_file(dest, "app.py", io.BytesIO(b"a"), LIMITS, counter)
    with pytest.raises(UnsafeUpload, match="duplicate path"):
        add_file(dest, "./app.py", io.BytesIO(b"b"), LIMITS, counter)
    with pytest.raises(UnsafeUpload, match="escapes"):
        add_file(dest, "../x", io.BytesIO(b"b"), LIMITS, counter)
    assert tree_of(dest) == {"app.py": b"a"}


def test_add_file_removes_a_file_cut_short_by_a_cap(dest: Path) -> None:
    with pytest.raises(PayloadTooLarge, match="'big.bin': the file is over the limit"):
        add_file(dest, "big.bin", io.BytesIO(b"\x00" * (LIMITS.max_file_bytes + 1)), LIMITS, UploadCounter())
    assert tree_of(dest) == {}


def test_add_file_counts_the_body_and_the_entries(dest: Path) -> None:
    limits = UploadLimits(max_upload_bytes=150, max_tree_bytes=10**6, max_file_bytes=100, max_entries=3)
    counter = UploadCounter()
    add_file(dest, "a", io.BytesIO(b"x" * 100), limits, counter)
    with pytest.raises(PayloadTooLarge, match="'b': the upload is over the limit of 150 bytes"):
        add_file(dest, "b", io.BytesIO(b"x" * 100), limits, counter)
    add_file(dest, "c", io.BytesIO(b""), limits, counter)
    with pytest.raises(PayloadTooLarge, match="'d': the upload has more than 3 entries"):
        add_file(dest, "d", io.BytesIO(b""), limits, counter)


# Hand-made hostile zips -------------------------------------------------------------------------------------------


def _patch_declared_sizes(data: bytes, name: str, size: int) -> bytes:
    """Rewrite an entry's uncompressed size in its local header and its central directory record."""
    patched = bytearray(data)
    encoded = name.encode()
    local = data.index(b"PK\x03\x04")
    while data[local + 30: local + 30 + len(encoded)] != encoded:
        local = data.index(b"PK\x03\x04", local + 4)
    struct.pack_into("<L", patched, local + 22, size)
    central = data.index(b"PK\x01\x02")
    while data[central + 46: central + 46 + len(encoded)] != encoded:
        central = data.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<L", patched, central + 24, size)
    return bytes(patched)


def _with_overlapping_copy(data: bytes, name: str, copy_name: str) -> bytes:
    """Add a second central directory record pointing at the same local header (the overlap trick)."""
    central = data.index(b"PK\x01\x02")
    end = data.index(b"PK\x05\x06")
    record = bytearray(data[central:end])
    assert record[46:46 + len(name)] == name.encode() and len(copy_name) == len(name)
    record[46:46 + len(name)] = copy_name.encode()
    directory = data[central:end] + bytes(record)
    eocd = bytearray(data[end:])
    count = struct.unpack_from("<H", eocd, 10)[0] + 1
    struct.pack_into("<HHL", eocd, 8, count, count, len(directory))
    return data[:central] + directory + bytes(eocd)
