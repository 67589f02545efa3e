"""Disk caps for space containers: file-backed ext4 filesystems, loop-mounted on the host, as the only places a
container can write.

Docker's overlay2 on ext4 cannot cap a container's writable layer (`--storage-opt size` needs XFS project
quotas, which this kernel lacks), and a size-capped tmpfs is memory. So a container's root filesystem is
read-only, and what it may write lives on filesystems of its own, whose size is the cap the kernel enforces:
writing past it fails with ENOSPC inside the container, and the host's disk loses no more than the cap (the
image files are sparse: they take only what is written).

  - scratch, one per container, sized by its hardware flavor (`disk_gb` in the hardware table): /tmp, /var/tmp,
    its home and its working directory (volumes bound to folders of it; Docker copies the image's files there on
    first mount, so the app finds its files and may write next to them). Gone with the container.
  - data, one per space with persistent storage, sized by its tier: mounted at /data, kept across restarts and
    rebuilds, grown when the tier grows, deleted with the space.

A data volume made before disk caps existed (a plain Docker volume, uncapped) is moved onto a capped filesystem
of its own on the space's next start (`unpack_volume`, driven by the Docker runtime): its files are copied there
whole (owners, modes and times kept), and only then is the old volume replaced; files that do not fit the tier
leave the old volume as it was and the start fails naming the sizes.

Everything lives under the disks folder (`SPACEHUB_DISKS_DIR`, default `<data dir>/disks`; root only). dockerd
binds the containers' volumes from it by path, so a platform that runs in a container must see it at the same
path as the host does, its mounts propagating to the host (deploy/compose/). Mounting needs root: the Docker
runtime's worker runs as root (it drives dockerd, which is root-equivalent anyway).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from spacehub.errors import StartFailed

GIB = 1024**3
# Scratch: no journal (it dies with the container), inodes every 64 KiB, no blocks reserved for root, and the
# inode tables left for the kernel to initialise on demand (noinit_itable: no background zeroing of a 50 GB file).
_SCRATCH_MKFS = ["-O", "^has_journal", "-i", "65536", "-m", "0", "-E", "lazy_itable_init=1,nodiscard"]
_DATA_MKFS = ["-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"]
_MOUNT_OPTIONS = "loop,nosuid,nodev,noinit_itable"


def _run(argv: list[str], what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise StartFailed(f"cannot {what}: {argv[0]} is not installed (deploy/setup/docker.sh installs it)") from None
    if result.returncode != 0:
        raise StartFailed(f"cannot {what}: {result.stderr.strip() or result.stdout.strip()}")


class LoopDisk:
    """One ext4 filesystem in a sparse file, mounted on the host."""

    def __init__(self, image: Path, mountpoint: Path) -> None:
        self.image = image
        self.mountpoint = mountpoint

    def mounted(self) -> bool:
        return os.path.ismount(self.mountpoint)

    def create(self, size_bytes: int, *, journal: bool) -> None:
        if os.geteuid() != 0:
            raise StartFailed("disk caps need root: the Docker runtime's worker mounts a filesystem per container")
        self.image.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.image.with_name(self.image.name + ".partial")
        with open(partial, "wb") as fh:
            fh.truncate(size_bytes)
        _run(["mkfs.ext4", "-q", "-F", *(_DATA_MKFS if journal else _SCRATCH_MKFS), str(partial)],
             f"make a {size_bytes // (1024 * 1024)} MB filesystem")
        partial.rename(self.image)

    def mount(self) -> None:
        if self.mounted():
            return
        self.mountpoint.mkdir(parents=True, exist_ok=True, mode=0o700)
        _run(["mount", "-o", _MOUNT_OPTIONS, str(self.image), str(self.mountpoint)], f"mount {self.image}")

    def grow(self, size_bytes: int) -> None:
        """Grow a mounted filesystem to `size_bytes` (never shrinks: that could lose data)."""
        if self.image.stat().st_size >= size_bytes:
            return
        with open(self.image, "r+b") as fh:
            fh.truncate(size_bytes)
        device = self._device()
        _run(["losetup", "-c", device], f"resize {device}")
        _run(["resize2fs", device], f"grow the filesystem on {device}")

    def _device(self) -> str:
        target = str(self.mountpoint.resolve())
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1] == target:
                return fields[0]
        raise StartFailed(f"{self.mountpoint} is not mounted")

    def destroy(self) -> None:
        """Unmount (the loop device goes with it) and delete. Idempotent."""
        for _ in range(10):
            if not self.mounted():
                break
            if subprocess.run(["umount", str(self.mountpoint)], capture_output=True).returncode != 0:
                time.sleep(0.2)
        if self.mounted():  # still busy: detach it now; the kernel frees it once the last user lets go
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        with contextlib.suppress(FileNotFoundError):
            self.image.unlink()
        with contextlib.suppress(OSError):
            self.mountpoint.rmdir()


def scratch_disk(disks_dir: Path, container_name: str) -> LoopDisk:
    root = disks_dir / "scratch"
    return LoopDisk(root / f"{container_name}.img", root / container_name)


def data_disk(disks_dir: Path, volume_name: str) -> LoopDisk:
    root = disks_dir / "volumes"
    return LoopDisk(root / f"{volume_name}.img", root / volume_name)


def scratch_names(disks_dir: Path) -> list[str]:
    """Containers that have (or had) a scratch disk here."""
    root = disks_dir / "scratch"
    if not root.is_dir():
        return []
    names = {p.name[: -len(".img")] for p in root.glob("*.img")} | {p.name for p in root.iterdir() if p.is_dir()}
    return sorted(names)


def writable_paths(home: str, workdir: str) -> list[str]:
    """Where a container may write besides /data: /tmp, /var/tmp, its home and working directory, the outermost of
    nested ones only (a volume inside another would hide part of it), never / or anything under /data."""
    wanted = []
    for raw in ("/tmp", "/var/tmp", home, workdir):
        path = os.path.normpath(raw) if raw and raw.startswith("/") else ""
        if path in ("", "/") or path == "/data" or path.startswith("/data/") or path in wanted:
            continue
        wanted.append(path)
    return [p for p in wanted if not any(p != q and p.startswith(q + "/") for q in wanted)]


def prepare_folder(path: Path, uid: int = 1000) -> None:
    """A folder on a capped disk that the app (uid 1000) owns."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, uid, uid)


class _ChunkReader:
    """A file-like view of an iterator of byte chunks (a tar streamed from the Docker API)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def unpack_volume(chunks: Iterable[bytes], root: str, dest: Path) -> None:
    """Extract a volume's tar (its entries under `root`/, as Docker's archive API gives a folder) into `dest`,
    keeping numeric owners and modes. tarfile's `tar` filter refuses any entry that would land outside `dest`
    (through `..` or a link the volume's owner made). StartFailed when the files do not fit the filesystem."""
    prefix = root.strip("/") + "/"

    def inside(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        for member in archive:
            if not member.name.startswith(prefix):
                continue  # the folder itself: dest stands for it
            member.name = member.name[len(prefix):]
            if member.islnk() and member.linkname.startswith(prefix):
                member.linkname = member.linkname[len(prefix):]
            yield member

    try:
        with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as archive:  # type: ignore[call-overload]
            archive.extractall(dest, members=inside(archive), numeric_owner=True, filter="tar")
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StartFailed("the files of the space's /data do not fit its storage tier's disk") from None
        raise StartFailed(f"cannot copy the space's /data onto its capped disk: {exc}") from None
    except tarfile.TarError as exc:
        raise StartFailed(f"cannot copy the space's /data onto its capped disk: {exc}") from None
