"""Disk caps: a container writes only to its own capped filesystems (scratch: /tmp, home, working directory,
sized by its flavor; /data: sized by its storage tier). Past the cap the write fails with ENOSPC inside the
container, and the host's disk loses no more than the cap."""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from probekit import SPACE_IDS, build_probe, docker

from spacehub.errors import BuildFailed, StartFailed
from spacehub.settings import Settings
from spacehub_runner import diskcap
from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.plugs import Artifact, BuildPlan, Handle, RunSpec
from spacehub_runner.runtimes.docker import DockerRuntime
from support.sandbox import sandbox_settings

pytestmark = pytest.mark.docker

MIB = 1024 * 1024
SCRATCH_MB = 64  # the test flavor's disk
DATA_GB = 1  # the test's `small` storage tier


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Settings:
    folder = tmp_path_factory.mktemp("disk")
    table = folder / "hardware.yaml"
    table.write_text(f"disk-test: {{cpus: 1, memory_gb: 4, disk_gb: {SCRATCH_MB / 1024}}}\n")
    return sandbox_settings(data_dir=folder / "data", hardware_table=table, storage_small_gb=DATA_GB,
                            ready_timeout_s=60, stop_grace_s=1)


@pytest.fixture(scope="module")
def probe(builder: DockerBuilder, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Artifact]:
    artifact = build_probe(builder, base_image, tmp_path_factory.mktemp("probe"))
    yield artifact
    docker("rmi", artifact.ref, check=False)


def _start(runtime: DockerRuntime, artifact: Artifact, space_id: int, **spec: object) -> Handle:
    run = RunSpec(space_id=space_id, space_key=f"tests/disk-{space_id}", revision=secrets.token_hex(20),
                  plan=BuildPlan(recipe="docker"), env={}, hardware="disk-test", **spec)  # type: ignore[arg-type]
    handle = runtime.start(run, artifact)
    runtime.wait_ready(handle, timeout=60)
    return handle


def _write(handle: Handle, path: str, mb: int) -> dict[str, object]:
    query = urllib.parse.urlencode({"path": path, "mb": mb})
    with urllib.request.urlopen(f"http://{handle.target}/write?{query}", timeout=300) as response:
        return dict(json.load(response))


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def _free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_writing_past_the_flavor_cap_fails_inside_with_enospc(capped: Settings, probe: Artifact) -> None:
    runtime = DockerRuntime(capped)
    handle = _start(runtime, probe, SPACE_IDS[10])
    name = handle.data["name"]
    disk = diskcap.scratch_disk(capped.disk_caps_dir, name)
    try:
        assert disk.mounted()
        free_before = _free(capped.data_dir)
        result = _write(handle, "/tmp/fill", SCRATCH_MB * 6)
        assert result["error"] == "ENOSPC", result
        assert 0 < int(result["written_mb"]) <= SCRATCH_MB, result  # type: ignore[call-overload]
        # The home (and app) folder shares the cap: it is full now as well.
        assert _write(handle, "/home/user/more", 8)["error"] == "ENOSPC"
        # Nothing of the image itself is writable.
        assert _write(handle, "/opt/elsewhere", 1)["error"] == "EROFS"
        # The host: the container's disk holds at most its cap, and the host lost no more than that.
        assert _allocated(disk.image) <= (SCRATCH_MB + 8) * MIB
        assert free_before - _free(capped.data_dir) <= (SCRATCH_MB + 96) * MIB
    finally:
        runtime.stop(handle)
    assert not disk.mounted() and not disk.image.exists()
    assert docker("volume", "ls", "-q", "--filter", f"label=spacehub.scratch={name}").stdout.strip() == ""


def test_the_app_finds_its_files_and_may_write_next_to_them(capped: Settings, probe: Artifact) -> None:
    runtime = DockerRuntime(capped)
    handle = _start(runtime, probe, SPACE_IDS[11])
    try:
        container = handle.data["container_id"]
        info = json.loads(docker("inspect", container).stdout)[0]
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        # The image's home (its dotfiles) was copied onto the capped disk, owned by the app.
        listing = docker("exec", container, "ls", "-a", "/home/user").stdout.split()
        assert ".bashrc" in listing
        assert _write(handle, "/home/user/notes", 1) == {"path": "/home/user/notes", "written_mb": 1, "error": None}
        assert _write(handle, "/var/tmp/x", 1)["error"] is None
        mode = docker("exec", container, "stat", "-c", "%a %U", "/tmp").stdout.split()
        assert mode == ["1777", "root"]
    finally:
        runtime.stop(handle)


def test_data_is_capped_by_its_tier_and_kept_across_restarts(capped: Settings, probe: Artifact) -> None:
    runtime = DockerRuntime(capped)
    space_id = SPACE_IDS[12]
    volume = runtime.volume_name(space_id)
    disk = diskcap.data_disk(capped.disk_caps_dir, volume)
    try:
        handle = _start(runtime, probe, space_id, storage="small")
        try:
            assert _write(handle, "/data/kept", 1)["error"] is None
            result = _write(handle, "/data/fill", DATA_GB * 1024 + 256)
            assert result["error"] == "ENOSPC", result
            assert int(result["written_mb"]) <= DATA_GB * 1024  # type: ignore[call-overload]
            assert _allocated(disk.image) <= (DATA_GB * 1024 + 64) * MIB
        finally:
            runtime.stop(handle)
        again = _start(runtime, probe, space_id, storage="small")  # a new container, the same /data
        try:
            files = docker("exec", again.data["container_id"], "ls", "/data").stdout.split()
            assert "kept" in files and "fill" in files
        finally:
            runtime.stop(again)
    finally:
        runtime.remove_volume(volume)
    assert not disk.mounted() and not disk.image.exists()


def test_a_build_that_takes_more_disk_than_its_cap_is_stopped(base_image: str, tmp_path: Path) -> None:
    """BuildKit writes into dockerd's own storage, which no quota covers: the build is watched and stopped."""
    capped = sandbox_settings(data_dir=tmp_path / "data", docker_build_disk_gb=0.25, docker_build_disk_check_s=0.2)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo {secrets.token_hex(4)} && dd if=/dev/zero of=/big bs=1M count=4096\n"
    )
    root = Path(docker("info", "--format", "{{.DockerRootDir}}").stdout.strip())
    free_before = _free(root)
    lines: list[str] = []
    with pytest.raises(BuildFailed, match=r"took more than 0.25 GB of disk"):
        artifact = DockerBuilder(capped).build(BuildPlan(recipe="docker"), tree, lines.append)
        docker("rmi", artifact.ref, check=False)  # only if the cap failed: do not keep 4 GB around
    # Stopped well short of the 4 GB the step asked for, and its partial layer dropped with it.
    assert free_before - _free(root) < 1024 * MIB


def test_a_data_volume_from_before_the_caps_is_moved_onto_a_capped_disk(capped: Settings, probe: Artifact) -> None:
    """A plain Docker volume (uncapped, as an older spacehub made it) holding the space's files: the next start
    copies them, owners and links kept, onto a filesystem of the tier's size and binds /data there."""
    runtime = DockerRuntime(capped)
    space_id = SPACE_IDS[13]
    volume = runtime.volume_name(space_id)
    disk = diskcap.data_disk(capped.disk_caps_dir, volume)
    docker("volume", "create", "--label", "spacehub.managed=1", "--label", f"spacehub.instance={runtime.instance}",
           "--label", f"spacehub.space={space_id}", volume)
    try:
        docker("run", "--rm", "--network", "none", "--entrypoint", "sh", "-v", f"{volume}:/data", probe.ref, "-c",
               "echo kept > /data/kept && mkdir -p /data/sub && echo deep > /data/sub/file && "
               "ln -s kept /data/link && chown -R 1000:1000 /data")
        handle = _start(runtime, probe, space_id, storage="small")
        try:
            container = handle.data["container_id"]
            labels = json.loads(docker("volume", "inspect", volume).stdout)[0]["Labels"]
            assert labels.get("spacehub.disk") == "loop"
            assert disk.mounted()
            size = os.statvfs(disk.mountpoint)
            assert size.f_blocks * size.f_frsize <= DATA_GB * 1024 * MIB  # the tier's size, a real cap
            shown = docker("exec", container, "sh", "-c", "cat /data/kept /data/sub/file /data/link; "
                           "stat -c '%u %N' /data/kept /data/link").stdout.splitlines()
            assert shown[:3] == ["kept", "deep", "kept"]
            assert shown[3] == "1000 '/data/kept'"
            assert shown[4] == "1000 '/data/link' -> 'kept'"
            # What the app writes now lands on the capped disk.
            assert _write(handle, "/data/new", 1)["error"] is None
            assert (disk.mountpoint / "data" / "new").is_file()
            assert not (disk.mountpoint / "data.migrating").exists()
        finally:
            runtime.stop(handle)
    finally:
        runtime.remove_volume(volume)
    assert not disk.mounted() and not disk.image.exists()


def test_files_that_do_not_fit_the_capped_disk_are_refused_whole(tmp_path: Path) -> None:
    """The copy of an old volume onto a disk too small for it: a clear StartFailed, nothing left half-copied
    (the runtime keeps the old volume then)."""
    disk = diskcap.LoopDisk(tmp_path / "small.img", tmp_path / "small")
    disk.create(16 * MIB, journal=True)
    disk.mount()
    try:
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            folder = tarfile.TarInfo("from")
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
            big = tarfile.TarInfo("from/big")
            big.size = 32 * MIB
            tar.addfile(big, io.BytesIO(b"\0" * big.size))
        dest = disk.mountpoint / "data.migrating"
        dest.mkdir()
        chunks = (archive.getvalue()[i:i + MIB] for i in range(0, len(archive.getvalue()), MIB))
        with pytest.raises(StartFailed, match="do not fit its storage tier"):
            diskcap.unpack_volume(chunks, "from", dest)
    finally:
        disk.destroy()
