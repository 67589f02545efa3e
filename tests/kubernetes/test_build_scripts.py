"""The build pod's own shell scripts, run for real with BusyBox (the shell and tools of the Alpine-based BuildKit
image): the init container's fetch against the worker's real context server (digest checked, GNU long names
unpacked, a swapped tarball refused), and the BuildKit container's glue (its arguments passed through untouched,
the pushed digest taken from a metadata file shaped as buildctl writes it, a failed build's exit code kept).
Only the paths differ from the Job's (/workspace and /run/spacehub/... move under a temporary folder); BuildKit
itself is played by a script, since its image cannot be pulled here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from spacehub_runner.kube import buildcontext, buildobjects

BUSYBOX = shutil.which("busybox")
APPLETS = ("sh", "wget", "sha256sum", "tar", "mkdir", "rm", "cat", "grep", "echo", "printf")
DIGEST = "sha256:" + "4e" * 32


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A PATH of BusyBox applets only, as in the BuildKit image."""
    assert BUSYBOX, "busybox is missing: run deploy/setup/system.sh (as root) first"
    tools = tmp_path / "bin"
    tools.mkdir()
    for applet in APPLETS:
        (tools / applet).symlink_to(BUSYBOX)
    return tools


def _run(script: str, tmp_path: Path, box: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = script.replace("/workspace", str(tmp_path / "workspace"))
    script = script.replace("/run/spacehub/context", str(tmp_path / "context-url"))
    script = script.replace("/dev/termination-log", str(tmp_path / "termination-log"))
    return subprocess.run([str(box / "sh"), "-c", script, *args], env={"PATH": str(box), **env},
                          capture_output=True, text=True, timeout=60)


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    deep = ctx / "app" / ("a-rather-long-folder-name-" * 3) / ("and-a-file-name-longer-than-tar-allows-" * 2)
    deep.mkdir(parents=True)
    (deep / "weights.txt").write_text("deep\n")
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / ".git").mkdir()
    (ctx / ".git" / "HEAD").write_text("ref\n")
    return ctx


def _fetch(tmp_path: Path, box: Path, tarball: Path, digest: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "context-url").mkdir()
    with buildcontext.serve(tarball, "127.0.0.1", "28470-28489") as url:
        (tmp_path / "context-url" / "url").write_text(url)
        return _run(buildobjects.FETCH_SCRIPT, tmp_path, box, CONTEXT_SHA256=digest)


def test_the_init_container_fetches_checks_and_unpacks_the_context(tmp_path: Path, box: Path) -> None:
    ctx = _context(tmp_path)
    tarball = tmp_path / "context.tar"
    digest = buildcontext.pack(ctx, tarball)
    done = _fetch(tmp_path, box, tarball, digest)
    assert done.returncode == 0, done.stderr
    unpacked = tmp_path / "workspace" / "context"
    assert (unpacked / "Dockerfile").read_text() == "FROM scratch\n"
    (deep,) = list(unpacked.glob("app/*/*/weights.txt"))
    assert deep.read_text() == "deep\n" and len(str(deep.relative_to(unpacked))) > 100
    assert not (unpacked / ".git").exists()  # never sent
    assert not (tmp_path / "workspace" / "context.tar").exists()


def test_a_tarball_that_is_not_the_one_sent_is_refused(tmp_path: Path, box: Path) -> None:
    tarball = tmp_path / "context.tar"
    buildcontext.pack(_context(tmp_path), tarball)
    done = _fetch(tmp_path, box, tarball, "0" * 64)
    assert done.returncode != 0
    assert not (tmp_path / "workspace" / "context").exists()


def test_a_wrong_token_gets_nothing(tmp_path: Path, box: Path) -> None:
    tarball = tmp_path / "context.tar"
    digest = buildcontext.pack(_context(tmp_path), tarball)
    (tmp_path / "workspace").mkdir()
    (tmp_path / "context-url").mkdir()
    with buildcontext.serve(tarball, "127.0.0.1", "28470-28489") as url:
        (tmp_path / "context-url" / "url").write_text(url.rsplit("/", 1)[0] + "/guessed")
        done = _run(buildobjects.FETCH_SCRIPT, tmp_path, box, CONTEXT_SHA256=digest)
    assert done.returncode != 0 and not (tmp_path / "workspace" / "context").exists()


def _fake_buildkit(box: Path, tmp_path: Path, exit_code: int) -> None:
    """Plays `buildctl-daemonless.sh`: records its arguments, writes the metadata file as buildctl does
    (indented JSON of the exporter's response), exits as told."""
    meta = tmp_path / "workspace" / "metadata.json"
    script = box / "buildctl-daemonless.sh"
    script.write_text(
        "#!" + str(box / "sh") + "\n"
        f'for a in "$@"; do echo "$a"; done > {tmp_path / "args"}\n'
        f"printf '{{\\n  \"containerimage.config.digest\": \"sha256:{'0c' * 32}\",\\n"
        f"  \"containerimage.digest\": \"{DIGEST}\",\\n  \"image.name\": \"r/app:k\"\\n}}' > {meta}\n"
        f"exit {exit_code}\n")
    script.chmod(0o755)


def test_the_build_script_passes_the_arguments_and_reports_the_digest(tmp_path: Path, box: Path) -> None:
    (tmp_path / "workspace").mkdir()
    _fake_buildkit(box, tmp_path, 0)
    job = buildobjects.BuildJob(namespace="b", instance="i", name="build-x", key="k" * 64, image="img",
                                target="r/app:k", context_sha256="0" * 64, deadline_s=60, ttl_s=60, cpus=1,
                                memory_gb=1, disk_gb=1, build_args={"GREETING": "hello world; $(rm -rf /)"})
    args = buildobjects.buildctl_args(job)
    done = _run(buildobjects.BUILD_SCRIPT, tmp_path, box, "buildctl", *args)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "args").read_text().splitlines() == args  # untouched: no value meets the shell
    assert (tmp_path / "termination-log").read_text().strip() == DIGEST


def test_a_failed_build_keeps_its_exit_code_and_reports_no_digest(tmp_path: Path, box: Path) -> None:
    (tmp_path / "workspace").mkdir()
    _fake_buildkit(box, tmp_path, 3)
    done = _run(buildobjects.BUILD_SCRIPT, tmp_path, box, "buildctl", "build")
    assert done.returncode == 3
    assert not (tmp_path / "termination-log").exists() or not (tmp_path / "termination-log").read_text()


def test_busybox_is_what_runs(box: Path) -> None:
    version = subprocess.run([str(box / "sh"), "-c", "wget --help 2>&1; true"], capture_output=True,
                             text=True, env={"PATH": str(box)}, timeout=30)
    assert "BusyBox" in version.stdout + version.stderr, os.fspath(box)
