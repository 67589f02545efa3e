"""Build steps run with `no-new-privileges` and a minimal capability set.

dockerd's BuildKit (what `DOCKER_BUILDKIT=1 docker build` drives) runs every `RUN` step through the `runc` binary
with Docker's default capabilities and `no-new-privileges` off, and offers no option to change either. So the
host's `runc` is diverted (`dpkg-divert --local`; upgrades of the runc package still land, on the diverted
path) and replaced by a small wrapper: a call whose OCI bundle lies under BuildKit's executor directory (a build
step) gets its `config.json` rewritten first (`noNewPrivileges: true`, every capability set cut down to
`SPACEHUB_DOCKER_BUILD_CAPS`); every other call (each container's runc, via containerd) passes through untouched.
A wrapper that cannot rewrite a step's config fails the step: nothing runs unhardened by accident.

The default set is what `apt-get install` and `pip install` need as root (files' owners and modes, apt dropping
to its `_apt` user): CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID. Gone: NET_RAW, MKNOD,
SYS_CHROOT, SETPCAP, SETFCAP, NET_BIND_SERVICE, AUDIT_WRITE; setuid binaries gain nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from spacehub.settings import Settings

MARK = "# spacehub sandbox: build-step runc wrapper"
REAL_SUFFIX = ".spacehub-real"
HOST_PYTHON = Path("/usr/bin/python3")
Log = Callable[[str], None]

# Run by the host's own python3 (-I: no site, no environment), argv: config.json, capabilities to keep.
_HARDEN = """\
import json, os, sys
path, keep = sys.argv[1], set(sys.argv[2:])
with open(path) as f:
    spec = json.load(f)
process = spec.setdefault("process", {})
process["noNewPrivileges"] = True
caps = process.setdefault("capabilities", {})
for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
    caps[kind] = [c for c in caps.get(kind) or [] if c in keep]
with open(path + ".spacehub", "w") as f:
    json.dump(spec, f)
os.replace(path + ".spacehub", path)
"""


class BuildStepsError(Exception):
    pass


def runc_path() -> Path:
    """The runc dockerd's BuildKit runs (found on PATH, as dockerd finds it)."""
    found = shutil.which("runc")
    if found is None:
        raise BuildStepsError("runc is not installed (Debian's docker.io brings it)")
    return Path(os.path.realpath(found))


def executor_dir(cli: str) -> str:
    """BuildKit's bundle directory inside dockerd's data root: every build step's OCI bundle lies under it."""
    result = subprocess.run([cli, "info", "--format", "{{.DockerRootDir}}"], capture_output=True, text=True,
                            timeout=60)
    root = result.stdout.strip()
    if result.returncode != 0 or not root.startswith("/"):
        raise BuildStepsError(f"cannot ask dockerd for its data root: {result.stderr.strip()}")
    return os.path.join(root, "buildkit", "executor") + "/"


def capabilities(settings: Settings) -> list[str]:
    caps = []
    for name in settings.docker_build_caps:
        name = name.strip().upper()
        name = name if name.startswith("CAP_") else f"CAP_{name}"
        if not name[4:].replace("_", "").isalnum():
            raise BuildStepsError(f"not a capability name: {name!r}")
        caps.append(name)
    return sorted(set(caps))


def wrapper(real: Path, prefix: str, caps: list[str]) -> str:
    """The wrapper script (POSIX sh); the hardening itself runs only for build steps."""
    if "'" in _HARDEN or "'" in prefix or any(c in prefix for c in ' "$`\\*?['):
        raise BuildStepsError(f"cannot quote BuildKit's directory {prefix!r} safely")
    return f"""#!/bin/sh
{MARK}
# Written by `spacehub sandbox install`; the real runc is {real}. Build steps (OCI bundles under {prefix})
# get no-new-privileges and only these capabilities: {' '.join(caps) or '(none)'}. Other calls pass through.
bundle=""
take=""
for arg in "$@"; do
    if [ -n "$take" ]; then bundle="$arg"; take=""; continue; fi
    case "$arg" in
        --bundle|-b) take=1 ;;
        --bundle=*) bundle="${{arg#--bundle=}}" ;;
    esac
done
case "$bundle" in
    {prefix}*)
        {HOST_PYTHON} -I -c '{_HARDEN}' "$bundle/config.json" {' '.join(caps)} \\
            || {{ echo "spacehub: could not harden build step $bundle" >&2; exit 1; }} ;;
esac
exec {real} "$@"
"""


def _expected(settings: Settings) -> tuple[Path, Path, str]:
    runc = runc_path()
    real = runc.with_name(runc.name + REAL_SUFFIX)
    return runc, real, wrapper(real, executor_dir(settings.docker_cli), capabilities(settings))


def problems(settings: Settings) -> list[str]:
    try:
        runc, real, text = _expected(settings)
    except (BuildStepsError, OSError, subprocess.SubprocessError) as exc:
        return [f"build steps: {exc}"]
    try:
        current = runc.read_text(errors="replace") if runc.stat().st_size < 65536 else ""
    except OSError as exc:
        return [f"build steps: cannot read {runc}: {exc}"]
    if MARK not in current:
        return [f"build steps: {runc} is the plain runc: BuildKit steps would run with Docker's default "
                "capabilities and without no-new-privileges"]
    if current != text:
        return [f"build steps: the runc wrapper at {runc} is out of date (capabilities or paths changed)"]
    if not os.access(real, os.X_OK):
        return [f"build steps: the real runc {real} is missing"]
    return []


def install(settings: Settings, log: Log) -> None:
    """Divert runc and put the wrapper in its place (idempotent; root)."""
    if not HOST_PYTHON.exists():
        raise BuildStepsError(f"{HOST_PYTHON} is needed by the build-step wrapper (apt-get install python3)")
    runc, real, text = _expected(settings)
    if not _is_wrapper(runc):
        # First install: copy the real binary aside, then record the diversion, then swap the wrapper in with a
        # rename, so that at no moment is there no runc at its path.
        shutil.copy2(runc, real)
        _divert(["--add", str(runc)], runc, real)
    elif not os.access(real, os.X_OK):
        raise BuildStepsError(f"{runc} is spacehub's wrapper but the real runc {real} is gone; reinstall runc")
    tmp = runc.with_name(runc.name + ".spacehub-new")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, runc)
    log(f"build steps: {runc} wraps {real} (no-new-privileges; capabilities {' '.join(capabilities(settings))})")


def _is_wrapper(runc: Path) -> bool:
    return runc.stat().st_size < 65536 and MARK in runc.read_text(errors="replace")


def remove(settings: Settings, log: Log) -> None:
    runc = runc_path()
    real = runc.with_name(runc.name + REAL_SUFFIX)
    if not real.exists():
        return
    os.replace(real, runc)
    _divert(["--remove", str(runc)], runc, real)
    log(f"build steps: {runc} is the plain runc again")


def _divert(action: list[str], runc: Path, real: Path) -> None:
    if shutil.which("dpkg-divert") is None:
        return  # not a Debian system: nothing to tell the package manager
    result = subprocess.run(["dpkg-divert", "--local", "--no-rename", "--divert", str(real), *action],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildStepsError(f"dpkg-divert {' '.join(action)} failed: {result.stderr.strip()}")

