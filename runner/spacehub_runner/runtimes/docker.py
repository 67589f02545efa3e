"""The docker runtime: one container per running revision, locked down per design.md §4.

Every container:
  - runs as uid 1000 with all capabilities dropped and `no-new-privileges` (plus dockerd's default seccomp);
  - has memory (no swap), CPU and pids limits from its hardware flavor, and a size-capped json-file log;
  - publishes its app port on 127.0.0.1 only, on a random host port (the proxy is the only way in);
  - sits on spacehub's own bridge network (`SPACEHUB_DOCKER_NETWORK`, icc off), whose egress the kernel polices
    (spacehub.sandbox.egress): of the host only the platform's public port on the gateway, DNS, and the public
    internet on 80/443; no private, loopback or link-local address, no other container. Redis, the API's
    internal listener and the database are unix sockets and files never mounted; nor is the Docker socket;
  - reaches the platform's public port as `host.docker.internal` (that network's gateway), for HF_ENDPOINT;
  - sees exactly the GPUs it was allocated (DeviceRequest with device ids), or none
    (NVIDIA_VISIBLE_DEVICES=void);
  - carries labels (`spacehub.managed=1`, `spacehub.space`, `spacehub.revision`) from which handles are
    rebuilt after a restart (`adopt`, `list_managed`): the handle is only ever data, never state on `self`;
  - and `spacehub.instance`, a hash of the data dir: platforms sharing one engine (test runs, several installs)
    only ever see, adopt and remove their own containers and volumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest, LogConfig

from spacehub import hardware
from spacehub.errors import Conflict, StartFailed
from spacehub.filecopy import copy_tree
from spacehub.settings import Settings

from .. import diskcap, imageregistry
from ..dockeropts import DockerOptions
from ..plugs import Artifact, Handle, RunSpec
from . import readiness

log = logging.getLogger(__name__)

MANAGED = "spacehub.managed"
SPACE = "spacehub.space"
REVISION = "spacehub.revision"
SPACE_KEY = "spacehub.space-key"
APP_PORT = "spacehub.app-port"
INSTANCE = "spacehub.instance"
STORAGE_GB = "spacehub.storage-gb"
SCRATCH = "spacehub.scratch"  # on a container's scratch volumes: the container's name
DISK = "spacehub.disk"  # "loop" on data volumes bound to a capped filesystem of their own
DATA_DIR = "/data"
HOST_ALIAS = "host.docker.internal"
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}

def instance_id(settings: Settings) -> str:
    """This platform's mark on its containers and volumes: a hash of its data dir."""
    return hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:12]


def data_volume_name(space_id: int, instance: str = "") -> str:
    """The named volume holding a space's persistent storage, mounted at /data."""
    return f"spacehub-data-{instance}-{int(space_id)}" if instance else f"spacehub-data-{int(space_id)}"


class DockerRuntime:
    name = "docker"

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None) -> None:
        self.settings = settings
        self.opts = DockerOptions.from_settings(settings)
        if self.opts.network == "host":
            raise ValueError("spaces must never run on the host network")
        self._client = client
        self._host_cpus: float | None = None
        self._gateway: str | None = None
        self.instance = instance_id(settings)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.from_env(version="auto")
        return self._client

    # -- the Runtime protocol ---------------------------------------------------------------------------

    def start(self, spec: RunSpec, artifact: Artifact, *, volume: str | None = None) -> Handle:
        """Create and start the container; return at once (readiness is the caller's `wait_ready`).

        `volume`: a named volume (see `data_volume_name`) mounted at /data; by default the space's own
        (`volume_name`) when its spec asks for persistent storage.
        """
        if volume is None and spec.storage:
            volume = self.volume_name(spec.space_id)
        container = self.create(spec, artifact, volume=volume)
        try:
            container.start()
            container.reload()
        except DockerException as exc:
            _remove_quietly(container)
            self.release_scratch(str(container.name))
            raise StartFailed(f"could not start the container: {_explain(exc)}") from None
        return _handle(container)

    def stop(self, handle: Handle) -> None:
        """Stop (SIGTERM, then SIGKILL after `stop_grace_s`) and remove the container. Idempotent."""
        container = self._get(handle)
        if container is None:
            self.release_scratch(str(handle.data.get("name") or ""))
            return
        if container.status == "paused":  # frozen: it must run again to get its SIGTERM
            with contextlib.suppress(APIError):
                container.unpause()
        try:
            container.stop(timeout=max(1, round(self.settings.stop_grace_s)))
        except NotFound:
            self.release_scratch(str(container.name))
            return
        except APIError:
            pass  # already stopping or dead: removal below settles it
        _remove_quietly(container)
        self.release_scratch(str(container.name))

    def poll(self, handle: Handle) -> int | None:
        """None while the container runs; its exit code once it stopped; -1 when it is gone."""
        container = self._get(handle)
        if container is None:
            return -1
        state = container.attrs.get("State", {})
        if state.get("Status") in ("created", "running", "restarting", "paused"):
            return None
        return int(state.get("ExitCode", -1))

    def logs(self, handle: Handle) -> Iterator[str]:
        """The container's log lines so far (stdout and stderr)."""
        container = self._get(handle)
        if container is None:
            return iter(())
        try:
            text = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        except NotFound:
            return iter(())
        return iter(text.splitlines())

    def follow_logs(self, handle: Handle) -> Iterator[str]:
        """The container's log lines, then new ones as they come, until it exits."""
        container = self._get(handle)
        if container is None:
            return
        partial = ""
        try:
            for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=True):
                partial += chunk.decode("utf-8", "replace")
                *lines, partial = partial.split("\n")
                yield from lines
        except NotFound:
            pass
        if partial:
            yield partial

    # -- Freezable: docker pause / unpause (the cgroup freezer) -------------------------------------------

    def freeze(self, handle: Handle) -> None:
        ident = handle.data.get("container_id") or handle.data.get("name")
        if ident:
            with contextlib.suppress(APIError):  # gone, stopped or paused already: nothing to freeze
                self.client.api.pause(ident)

    def thaw(self, handle: Handle) -> None:
        # One engine call, no inspect first: this is on the path of a waiting request.
        ident = handle.data.get("container_id") or handle.data.get("name")
        if ident:
            with contextlib.suppress(APIError):  # not paused (or gone): nothing to thaw
                self.client.api.unpause(ident)

    def is_frozen(self, handle: Handle) -> bool:
        container = self._get(handle)
        return container is not None and container.status == "paused"

    def wait_ready(self, handle: Handle, timeout: float | None = None, path: str = "/") -> None:
        wait = self.settings.ready_timeout_s if timeout is None else timeout
        readiness.wait_ready(handle, wait, path, poll=self.poll, logs=self.logs)

    # -- finding containers again after a restart -------------------------------------------------------

    def adopt(self, space_id: int) -> list[Handle]:
        """Handles of every container of this space (running or not), newest first."""
        return self._handles([f"{MANAGED}=1", f"{INSTANCE}={self.instance}", f"{SPACE}={int(space_id)}"])

    def list_managed(self) -> list[Handle]:
        """Handles of every container of this platform on this engine, so orphans can be found and removed."""
        return self._handles([f"{MANAGED}=1", f"{INSTANCE}={self.instance}"])

    def _handles(self, labels: list[str]) -> list[Handle]:
        found = self.client.containers.list(all=True, filters={"label": labels})
        found.sort(key=lambda c: c.attrs.get("Created", ""), reverse=True)
        return [_handle(c) for c in found]

    # -- building the container -------------------------------------------------------------------------

    def create(self, spec: RunSpec, artifact: Artifact, *, volume: str | None = None) -> Container:
        """Create (not start) the container; split from `start` so the request can be inspected."""
        if artifact.kind != "docker-image":
            raise StartFailed(f"the docker runtime cannot run a {artifact.kind!r} artifact")
        if imageregistry.is_digest_ref(artifact.ref):  # pushed to the registry: pull it unless it is here
            imageregistry.ensure_local(self.client, self.settings, artifact.ref)
        kwargs = self.create_kwargs(spec, artifact, volume=volume)
        if volume:
            self._ensure_volume(volume, spec, artifact)
        name = kwargs["name"]
        self.release_orphan_disks()  # what a crash left behind: found here, where new ones are made
        try:
            self._prepare_scratch(name, kwargs, self.disk_bytes(spec.hardware))
            return self.client.containers.create(**kwargs)
        except ImageNotFound:
            self.release_scratch(name)
            raise StartFailed(f"image {artifact.ref} is gone; rebuild the space") from None
        except DockerException as exc:
            self.release_scratch(name)
            raise StartFailed(f"could not create the container: {_explain(exc)}") from None
        except StartFailed:
            self.release_scratch(name)
            raise

    def create_kwargs(self, spec: RunSpec, artifact: Artifact, *, volume: str | None = None) -> dict[str, Any]:
        port = int(spec.plan.app_port or 7860)
        cpus, memory = self.limits(spec.hardware)
        kwargs: dict[str, Any] = {
            "image": artifact.ref,
            "name": f"spacehub-{int(spec.space_id)}-{spec.revision[:12]}-{secrets.token_hex(3)}",
            "labels": {
                MANAGED: "1",
                INSTANCE: self.instance,
                SPACE: str(int(spec.space_id)),
                REVISION: spec.revision,
                SPACE_KEY: spec.space_key,
                APP_PORT: str(port),
            },
            "environment": self.app_env(spec, port),
            "user": "1000:1000",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "init": True,  # a real PID 1 forwards SIGTERM, so a stop is quick instead of waiting for SIGKILL
            "mem_limit": memory,
            "memswap_limit": memory,  # no swap: over the limit is an OOM kill (exit 137), not thrashing
            "nano_cpus": int(cpus * 1e9),
            "pids_limit": self.opts.pids_limit,
            "log_config": LogConfig(
                type="json-file",
                config={"max-size": self.opts.log_max_size, "max-file": str(self.opts.log_max_file)},
            ),
            "network": self.opts.network,
            "ports": {f"{port}/tcp": ("127.0.0.1",)},  # random host port, loopback only
            "extra_hosts": {HOST_ALIAS: self.gateway()},
            "restart_policy": {"Name": "no"},  # the platform owns restarts and their backoff
            "detach": True,
        }
        if spec.gpu_ids:
            kwargs["device_requests"] = [DeviceRequest(device_ids=list(spec.gpu_ids), capabilities=[["gpu"]])]
        # Disk caps (spacehub_runner.diskcap): nothing of the image is writable; the container writes to its own
        # capped scratch filesystem (/tmp, /var/tmp, its home and working directory) and to /data.
        kwargs["read_only"] = True
        kwargs["volumes"] = {
            f"{kwargs['name']}-w{i}": {"bind": path, "mode": "rw"}
            for i, path in enumerate(self.writable_paths(artifact.ref))
        }
        if volume:
            kwargs["volumes"][volume] = {"bind": DATA_DIR, "mode": "rw"}
        return kwargs

    def writable_paths(self, image: str) -> list[str]:
        try:
            config = self.client.images.get(image).attrs.get("Config") or {}
        except ImageNotFound:
            raise StartFailed(f"image {image} is gone; rebuild the space") from None
        env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
        return diskcap.writable_paths(env.get("HOME", "/home/user"), str(config.get("WorkingDir") or ""))

    def disk_bytes(self, flavor_name: str) -> int:
        """A container's scratch cap: its flavor's `disk_gb` (the hardware table)."""
        return max(16 * 1024 * 1024, int(hardware.flavor(self.settings, flavor_name).disk_gb * diskcap.GIB))

    # -- disk caps ----------------------------------------------------------------------------------------

    def _prepare_scratch(self, name: str, kwargs: dict[str, Any], size_bytes: int) -> None:
        """The container's scratch filesystem, and a volume bound to a folder of it for each writable path."""
        disk = diskcap.scratch_disk(self.settings.disk_caps_dir, name)
        disk.create(size_bytes, journal=False)
        disk.mount()
        for volume, mount in kwargs["volumes"].items():
            if not volume.startswith(f"{name}-w"):
                continue
            folder = disk.mountpoint / volume.rpartition("-")[2]
            diskcap.prepare_folder(folder)
            if mount["bind"] in ("/tmp", "/var/tmp"):
                folder.chmod(0o1777)
            # Empty on first mount, so Docker copies the image's files (and their owners) into it.
            self.client.volumes.create(
                volume, driver="local", driver_opts={"type": "none", "o": "bind", "device": str(folder)},
                labels={INSTANCE: self.instance, SCRATCH: name},
            )

    def release_scratch(self, name: str) -> None:
        """Remove a container's scratch volumes and filesystem (after the container). Idempotent."""
        if not name:
            return
        volumes = self.client.volumes.list(filters={"label": [f"{SCRATCH}={name}"]})
        for attempt in range(20):  # a container being removed still holds its volumes for a moment
            left = []
            for found in volumes:
                try:
                    found.remove(force=True)
                except NotFound:
                    pass
                except APIError:
                    left.append(found)
            volumes = left
            if not volumes:
                break
            time.sleep(0.25 * (attempt + 1))
        if volumes:  # still in use: the next start's sweep (release_orphan_disks) finishes the job
            log.warning("scratch volumes of %s still in use; left for later", name)
            return
        diskcap.scratch_disk(self.settings.disk_caps_dir, name).destroy()

    def release_orphan_disks(self, min_age_s: float = 120.0) -> list[str]:
        """Scratch filesystems whose container is gone (a crash between their making and its removal)."""
        names = diskcap.scratch_names(self.settings.disk_caps_dir)
        if not names:
            return []
        mine = self.client.containers.list(all=True, filters={"label": [f"{INSTANCE}={self.instance}"]})
        alive = {c.name for c in mine}
        released = []
        for name in names:
            image = diskcap.scratch_disk(self.settings.disk_caps_dir, name).image
            made = image.stat().st_mtime if image.exists() else 0.0
            if name in alive or time.time() - made < min_age_s:
                continue  # in use, or maybe a start in progress
            self.release_scratch(name)
            released.append(name)
        return released

    def app_env(self, spec: RunSpec, port: int) -> dict[str, str]:
        env = {
            "GRADIO_NUM_PORTS": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONUNBUFFERED": "1",
            **spec.env,
            # Ours, whatever the space's variables say: bind, port and GPU visibility are not the app's.
            "GRADIO_SERVER_NAME": "0.0.0.0",
            "GRADIO_SERVER_PORT": str(port),
            "PORT": str(port),
            # Overrides any NVIDIA_VISIBLE_DEVICES=all baked into an image (the toolkit's env-var path).
            "NVIDIA_VISIBLE_DEVICES": ",".join(spec.gpu_ids) if spec.gpu_ids else "void",
        }
        if "HF_ENDPOINT" in env:
            env["HF_ENDPOINT"] = container_reachable_url(env["HF_ENDPOINT"])
        return env

    def limits(self, flavor_name: str) -> tuple[float, int]:
        """(cpus, memory bytes) for a flavor: its size in the hardware table scaled by settings, cpus capped
        at the host's."""
        size = hardware.flavor(self.settings, flavor_name)
        cpus = min(max(0.1, size.cpus * self.opts.cpu_scale), self.host_cpus())
        memory = int(size.memory_gb * self.opts.memory_scale * 1024**3)
        return round(cpus, 2), memory

    def gateway(self) -> str:
        """The host's address on the space network: where the platform's public port is, for containers."""
        if self._gateway is None:
            try:
                info = self.client.networks.get(self.opts.network).attrs
            except NotFound:
                raise StartFailed(f"docker network {self.opts.network!r} is missing: run `spacehub sandbox "
                                  "install` as root") from None
            configs = (info.get("IPAM") or {}).get("Config") or []
            found = [str(c["Gateway"]).split("/")[0] for c in configs if ":" not in c.get("Gateway", ":")]
            if not found:
                raise StartFailed(f"docker network {self.opts.network!r} has no IPv4 gateway")
            self._gateway = found[0]
        return self._gateway

    def host_cpus(self) -> float:
        if self._host_cpus is None:
            self._host_cpus = float(self.client.info().get("NCPU", 1))
        return self._host_cpus

    # -- persistent storage -----------------------------------------------------------------------------

    def volume_name(self, space_id: int) -> str:
        return data_volume_name(space_id, self.instance)

    def list_volumes(self) -> dict[str, int]:
        """This platform's space volumes: name -> space id (so volumes of deleted spaces can be removed)."""
        found = self.client.volumes.list(filters={"label": [f"{MANAGED}=1", f"{INSTANCE}={self.instance}"]})
        return {v.name: int((v.attrs.get("Labels") or {}).get(SPACE, "0")) for v in found}

    def _ensure_volume(self, name: str, spec: RunSpec, artifact: Artifact) -> None:
        """The space's /data: a docker volume bound to its own ext4 filesystem of the tier's size (a real cap),
        made on first use, mounted again (after a reboot) and grown (a bigger tier) on every start."""
        size = self.settings.storage_gb(spec.storage) * diskcap.GIB if spec.storage else 0
        disk = diskcap.data_disk(self.settings.disk_caps_dir, name)
        try:
            labels = self.client.volumes.get(name).attrs.get("Labels") or {}
        except NotFound:
            labels = None
        if labels is not None and labels.get(DISK) != "loop":
            if self.client.containers.list(all=True, filters={"volume": name}):
                # A volume from before disk caps, still in use (the revision this start replaces): moved at a
                # start that has it to itself (a wake, a restart), used as it is until then.
                log.warning("volume %s is not capped yet: it moves onto a capped disk at a start when no "
                            "container uses it", name)
                return
            self._migrate_volume(name, artifact, disk, size or diskcap.GIB)
            labels = None  # made again below, bound to the capped disk
        if not disk.image.exists():
            disk.create(size or diskcap.GIB, journal=True)
        disk.mount()
        if size:
            disk.grow(size)
        diskcap.prepare_folder(disk.mountpoint / "data")
        if labels is None:
            self._register_volume(name, spec.space_id, self.settings.storage_gb(spec.storage) if spec.storage else 0)

    def _register_volume(self, name: str, space_id: int, storage_gb: int) -> None:
        """The docker volume over a data disk's files (made and mounted): what the app's /data binds."""
        labels = {MANAGED: "1", INSTANCE: self.instance, SPACE: str(int(space_id)), DISK: "loop"}
        if storage_gb:
            labels[STORAGE_GB] = str(storage_gb)
        folder = diskcap.data_disk(self.settings.disk_caps_dir, name).mountpoint / "data"
        self.client.volumes.create(
            name, driver="local", driver_opts={"type": "none", "o": "bind", "device": str(folder)}, labels=labels,
        )

    def volume_files(self, name: str) -> Path | None:
        """The folder on this machine that holds a volume's files (for a backup), its disk mounted if it was not
        (after a reboot); None when there is no such volume or its files are out of reach from here."""
        try:
            volume = self.client.volumes.get(name)
        except NotFound:
            return None
        if (volume.attrs.get("Labels") or {}).get(DISK) == "loop":
            disk = diskcap.data_disk(self.settings.disk_caps_dir, name)
            if not disk.image.exists():
                return None
            disk.mount()
            return disk.mountpoint / "data"
        # A volume from before disk caps: dockerd's own folder, readable where the platform runs beside dockerd.
        mountpoint = Path(str(volume.attrs.get("Mountpoint") or ""))
        return mountpoint if mountpoint.is_absolute() and mountpoint.is_dir() else None

    def restore_volume(self, name: str, space_id: int, storage_gb: int, source: Path) -> None:
        """A space's persistent storage made again from a backup's copy of its files: a new data disk of its
        tier's size, the files (owners and modes kept), and the volume over them."""
        try:
            self.client.volumes.get(name)
        except NotFound:
            pass
        else:
            raise Conflict(f"volume {name} exists already: a restore needs an empty install")
        disk = diskcap.data_disk(self.settings.disk_caps_dir, name)
        if disk.image.exists():
            raise Conflict(f"{disk.image} exists already: a restore needs an empty install")
        disk.create(max(storage_gb, 1) * diskcap.GIB, journal=True)
        try:
            disk.mount()
            diskcap.prepare_folder(disk.mountpoint / "data")
            copy_tree(source, disk.mountpoint / "data")
            self._register_volume(name, space_id, storage_gb)
        except BaseException:
            disk.destroy()
            raise

    def _migrate_volume(self, name: str, artifact: Artifact, disk: diskcap.LoopDisk, size: int) -> None:
        """A volume from before disk caps (uncapped): its files are copied onto a capped disk of the tier's size,
        then the volume goes (it is made again, bound to that disk). The copy lands as `data.migrating` and is
        renamed `data` only when whole, so a crash redoes it; files that do not fit leave the old volume as is.
        The files come out through Docker's archive API from a container that is created and never started."""
        if not disk.image.exists():
            disk.create(size, journal=True)
        disk.mount()
        disk.grow(size)
        done = disk.mountpoint / "data"
        if not done.is_dir():
            staging = disk.mountpoint / "data.migrating"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            reader_name = f"{name}-migrate"
            with contextlib.suppress(NotFound):
                self.client.containers.get(reader_name).remove(force=True)
            reader = self.client.containers.create(artifact.ref, name=reader_name, entrypoint=["true"],
                                                   network_disabled=True,
                                                   volumes={name: {"bind": "/from", "mode": "ro"}})
            try:
                chunks, _stat = reader.get_archive("/from")
                diskcap.unpack_volume(chunks, "from", staging)
            except StartFailed:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            finally:
                reader.remove(force=True)
            staging.rename(done)
        log.info("volume %s: its files are on a capped disk of %d MB now", name, size // (1024 * 1024))
        self.client.volumes.get(name).remove(force=True)

    def remove_volume(self, name: str) -> None:
        """Delete a space's persistent storage (when the space is deleted). Idempotent."""
        with contextlib.suppress(NotFound):
            self.client.volumes.get(name).remove(force=True)
        diskcap.data_disk(self.settings.disk_caps_dir, name).destroy()

    # -- helpers ----------------------------------------------------------------------------------------

    def _get(self, handle: Handle) -> Container | None:
        ident = handle.data.get("container_id") or handle.data.get("name")
        if not ident:
            return None
        try:
            return self.client.containers.get(ident)
        except NotFound:
            return None


def container_reachable_url(url: str) -> str:
    """The platform's URL as a container reaches it: loopback hosts become the bridge gateway's alias."""
    parts = urlsplit(url)
    if parts.hostname not in _LOOPBACK:
        return url
    netloc = HOST_ALIAS + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _handle(container: Container) -> Handle:
    labels = container.labels
    port = labels.get(APP_PORT, "7860")
    bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
    host_port = next((b.get("HostPort") for b in bindings if b.get("HostIp") in ("127.0.0.1", "")), None)
    return Handle(
        runtime="docker",
        target=f"127.0.0.1:{host_port}" if host_port else "",
        data={
            "container_id": container.id,
            "name": container.name,
            "space_id": int(labels.get(SPACE, "0")),
            "revision": labels.get(REVISION, ""),
            "image": container.attrs.get("Config", {}).get("Image", ""),
            "app_port": int(port),
            "created": container.attrs.get("Created", ""),
        },
    )


def _remove_quietly(container: Container) -> None:
    for _ in range(3):
        try:
            container.remove(force=True)
            return
        except NotFound:
            return
        except APIError as exc:  # "removal already in progress" and the like
            if "already in progress" in str(exc):
                return
            time.sleep(0.5)


def _explain(exc: DockerException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
