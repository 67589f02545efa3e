"""The images every docker-built space stands on: base (OS + Python + uv) and SDK (base + a venv with Gradio).

    base   spacehub/base:py3.11            bootstrapped offline from Debian (debootstrap | docker import),
                                           or any image a deployment names, e.g. python:3.11-slim
    SDK    spacehub/sdk:py3.11-gradio6.31.0   FROM base + /opt/venv with gradio==V (uv, BuildKit cache mount)

Both are built once and reused: each function returns at once when its image is already there. An SDK image
records the base image it was built from (label `spacehub.base-id`) and is rebuilt when the base changes.
Entry points: `bootstrap_base` (CLI `spacehub images bootstrap`) and `ensure_sdk_image` (every gradio build).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spacehub.errors import BuildFailed, SpaceConfigError
from spacehub.sandbox.egress import BUILD_NETWORK
from spacehub.settings import Settings

from . import pkgsources
from .dockerbuild import BuildRequest, bridge_gateway, image_id, image_label, run_build
from .dockeropts import DEFAULT_PYTHON, DockerOptions, images_dir
from .plugs import LogFn

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
VENV = "/opt/venv"
UV_CACHE = "/var/cache/uv"
PREPARED_LABEL = "spacehub.base-prepared"  # the base already has uv, user 1000 and the host's CA bundle
BASE_ID_LABEL = "spacehub.base-id"
_GRADIO_VERSION = re.compile(r"^\d+(\.\d+){0,2}([a-z]+\d*)?$")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Debian bookworm's python3 is 3.11: the only version an offline bootstrap can provide.
_SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}

# Environment every image gets: the host's CA bundle for every TLS client (uv, requests, ssl), UTF-8.
_TLS_ENV = (
    "ENV LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "
    "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"
)
# Steps that make any Debian-based Python image fit the container contract (uid 1000 `user`, uv, CA bundle).
_PREPARE_STEPS = f"""\
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY uv /usr/local/bin/uv
RUN id -u 1000 >/dev/null 2>&1 || useradd --create-home --home-dir /home/user --uid 1000 --user-group \
--shell /bin/bash user
{_TLS_ENV}
"""


def uv_run(command: str) -> str:
    """A Dockerfile RUN line for a uv command: shared download cache, package sources from a build secret."""
    return (
        f"RUN --mount=type=cache,id=spacehub-uv,target={UV_CACHE} "
        f"--mount=type=secret,id={pkgsources.SECRET_ID},target={pkgsources.SECRET_TARGET} "
        f"{pkgsources.LOAD_SOURCES}export UV_CACHE_DIR={UV_CACHE} UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never "
        f"&& {command}"
    )


def uv_binary() -> Path:
    """The host's uv (from the `uv` PyPI package spacehub depends on), copied into images."""
    import uv

    return Path(uv.find_uv_bin())


def sdk_image_ref(opts: DockerOptions, python_version: str, gradio_version: str) -> str:
    return f"{opts.sdk_repo}:py{python_version}-gradio{gradio_version}"


def check_python_version(settings: Settings, python_version: str) -> None:
    available = list(settings.python_versions)
    if python_version not in available:
        raise SpaceConfigError(
            f"python_version {python_version} is not available here; available: {', '.join(available)}"
        )


# ---- base ------------------------------------------------------------------------------------------------


def bootstrap_base(settings: Settings, log: LogFn) -> str:
    """Make sure the base image exists; return its reference.

    A `spacehub/...` base is bootstrapped offline from Debian; any other name (python:3.11-slim) is pulled.
    """
    opts = DockerOptions.from_settings(settings)
    python = _SUITE_PYTHON.get(opts.debian_suite, DEFAULT_PYTHON)
    ref = opts.base_image_for(python)
    if image_id(opts.cli, ref):
        log(f"base image {ref} already present")
        return ref
    if not ref.startswith("spacehub/"):
        log(f"pulling base image {ref}")
        _run([opts.cli, "pull", ref], log, "pull the base image")
        return ref

    rootfs_tar = _rootfs_tarball(opts, settings, log)
    raw_ref = f"spacehub/rootfs:{opts.debian_suite}"
    log(f"importing {rootfs_tar} as {raw_ref}")
    changes = [f"ENV PATH={_PATH}", "ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]']
    argv = [opts.cli, "import"]
    for change in changes:
        argv += ["--change", change]
    _run([*argv, str(rootfs_tar), raw_ref], log, "import the base rootfs")

    with tempfile.TemporaryDirectory(prefix="spacehub-base-") as tmp:
        ctx = Path(tmp)
        _copy_prepare_files(ctx)
        (ctx / "sources.list").write_text(_apt_sources(opts))
        (ctx / "Dockerfile").write_text(f"FROM {raw_ref}\nCOPY sources.list /etc/apt/sources.list\n{_PREPARE_STEPS}")
        run_build(
            opts.cli,
            BuildRequest(
                context=ctx,
                dockerfile=ctx / "Dockerfile",
                tag=ref,
                labels={PREPARED_LABEL: "1", "spacehub.python-version": python},
                timeout_s=settings.build_timeout_s,
            ),
            log,
        )
    log(f"base image {ref} ready")
    return ref


def _apt_sources(opts: DockerOptions) -> str:
    """debootstrap writes the release alone; packages.txt installs should get updates and security fixes."""
    suite = opts.debian_suite
    return (
        f"deb {opts.debian_mirror} {suite} main\n"
        f"deb {opts.debian_mirror} {suite}-updates main\n"
        f"deb {opts.debian_security_mirror} {suite}-security main\n"
    )


def _rootfs_tarball(opts: DockerOptions, settings: Settings, log: LogFn) -> Path:
    """A Debian minbase rootfs with python3, cached under the data dir (debootstrap takes about a minute)."""
    cache = images_dir(settings) / f"rootfs-{opts.debian_suite}-minbase-python3.tar"
    if cache.exists():
        log(f"using cached rootfs {cache}")
        return cache
    if os.geteuid() != 0:
        raise BuildFailed("bootstrapping the base image needs root (debootstrap): spacehub images bootstrap")
    if not shutil.which("debootstrap"):
        raise BuildFailed("debootstrap is not installed (deploy/setup/docker.sh installs it)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spacehub-rootfs-", dir=cache.parent) as tmp:
        root = Path(tmp) / "rootfs"
        log(f"debootstrap {opts.debian_suite} from {opts.debian_mirror} (about a minute)")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                opts.debian_suite,
                str(root),
                opts.debian_mirror,
            ],
            log,
            "debootstrap the base rootfs",
        )
        # Downloaded .debs and package lists are half the size and stale by the next build anyway.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = Path(tmp) / "rootfs.tar"
        _run(
            [
                "tar",
                "--numeric-owner",
                "-C",
                str(root),
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-cf",
                str(partial),
                ".",
            ],
            log,
            "pack the base rootfs",
        )
        partial.rename(cache)  # atomic: a crash never leaves a half-written cache behind
    return cache


def _copy_prepare_files(ctx: Path) -> None:
    shutil.copy2(HOST_CA_BUNDLE, ctx / "ca-certificates.crt")
    shutil.copy2(uv_binary(), ctx / "uv")


def _run(argv: list[str], log: LogFn, what: str) -> None:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    for raw in proc.stdout:
        log(raw.decode("utf-8", "replace").rstrip("\n"))
    if proc.wait() != 0:
        raise BuildFailed(f"could not {what} (exit {proc.returncode})")


# ---- SDK -------------------------------------------------------------------------------------------------


def ensure_sdk_image(settings: Settings, python_version: str, gradio_version: str, log: LogFn) -> str:
    """Make sure the SDK image for (python, gradio) exists and stands on the current base; return its ref."""
    check_python_version(settings, python_version)
    check_gradio_version(gradio_version)
    opts = DockerOptions.from_settings(settings)
    base = opts.base_image_for(python_version)
    base_id = image_id(opts.cli, base)
    if base_id is None:
        if python_version != _SUITE_PYTHON.get(opts.debian_suite) and base.startswith("spacehub/"):
            raise BuildFailed(f"base image {base} is missing and cannot be bootstrapped from Debian")
        bootstrap_base(settings, log)
        base_id = image_id(opts.cli, base)
    ref = sdk_image_ref(opts, python_version, gradio_version)
    if image_id(opts.cli, ref) and image_label(opts.cli, ref, BASE_ID_LABEL) == base_id:
        log(f"SDK image {ref} already present")
        return ref

    log(f"building SDK image {ref}")
    prepared = image_label(opts.cli, base, PREPARED_LABEL) == "1"
    with tempfile.TemporaryDirectory(prefix="spacehub-sdk-") as tmp:
        ctx = Path(tmp)
        if not prepared:
            _copy_prepare_files(ctx)
        (ctx / "Dockerfile").write_text(sdk_dockerfile(base, python_version, gradio_version, prepared))
        with build_sources(settings, opts) as secret_files:
            run_build(
                opts.cli,
                BuildRequest(
                    context=ctx,
                    dockerfile=ctx / "Dockerfile",
                    tag=ref,
                    secret_files=secret_files,
                    labels={
                        BASE_ID_LABEL: base_id or "",
                        "spacehub.sdk": "gradio",
                        "spacehub.gradio-version": gradio_version,
                        "spacehub.python-version": python_version,
                    },
                    timeout_s=settings.build_timeout_s,
                ),
                log,
            )
    log(f"SDK image {ref} ready")
    return ref


def sdk_dockerfile(base: str, python_version: str, gradio_version: str, prepared: bool) -> str:
    """The SDK image's Dockerfile; an unprepared base needs `prepare_context` files in the context."""
    return "\n".join(
        [
            f"FROM {base}",
            "" if prepared else _PREPARE_STEPS,
            f"ENV VIRTUAL_ENV={VENV} PATH={VENV}/bin:$PATH PYTHONUNBUFFERED=1",
            uv_run(
                f"uv venv --python python{python_version} {VENV} && "
                f"uv pip install --python {VENV}/bin/python --compile-bytecode gradio=={gradio_version}"
            ),
            # /data is created owned by uid 1000 so a fresh named volume mounted there inherits it.
            "RUN mkdir -p /home/user/app /data && chown 1000:1000 /home/user/app /data",
            "",
        ]
    )


def prepare_context(ctx: Path) -> None:
    """The files the preparing steps copy in: the host's CA bundle and uv."""
    _copy_prepare_files(ctx)


def check_gradio_version(gradio_version: str) -> None:
    if not _GRADIO_VERSION.match(gradio_version):
        raise SpaceConfigError(f"sdk_version {gradio_version!r} is not a version like 6.31.0")


@contextmanager
def build_sources(settings: Settings, opts: DockerOptions) -> Iterator[dict[str, Path]]:
    """Serve the settings' package sources to one build; yield the `secret_files` entry for uv."""
    index_url = settings.pip_index_url
    extra = list(settings.pip_extra_index_urls)
    find_links = list(settings.pip_find_links)
    local = [x for x in (index_url or "", *extra, *find_links) if x and pkgsources.local_path(x)]
    # Only a local source needs the file server, and only then the address of the bridge build steps run on
    # (dockerd's default one), on one of the ports its egress rules let build steps reach.
    host = bridge_gateway(opts.cli, BUILD_NETWORK) if local else "127.0.0.1"
    ports = pkgsources.port_range(opts.package_ports)
    with (
        pkgsources.serve_sources(index_url, extra, find_links, host, opts.uv_index_strategy, ports) as sources,
        tempfile.TemporaryDirectory(prefix="spacehub-pkgsrc-") as tmp,
    ):
        path = Path(tmp) / "sources.sh"
        path.write_text(sources.env_script())
        path.chmod(0o600)
        yield {pkgsources.SECRET_ID: path}
