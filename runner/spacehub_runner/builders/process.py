"""The process builder: a shared virtualenv per environment plus a content-named copy of the app code.

No Docker: the app later runs as a plain subprocess (`spacehub_runner.runtimes.process`) with the platform's
own rights, so this is for trusted code on one machine.

Layout under the data dir:

    envs/<env hash>/            a virtualenv, shared by every space with the same environment
    envs/<env hash>/.spacehub-complete   written last: its presence means the env is whole
    envs/<env hash>.lock        flock'ed while that env is being built
    apps/<app key>/             a copy of one source tree; renamed into place when complete
    apps/<app key>.lock

The env hash covers everything that decides what gets installed (python version, gradio version,
pre-requirements, requirements, package sources), so the same environment is built once and reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import uv

from spacehub.errors import BuildFailed
from spacehub.settings import Settings
from spacehub_runner.parentdeath import signal_on_parent_death
from spacehub_runner.plugs import NO_INPUTS, Artifact, BuildInputs, BuildPlan, LogFn

# Bump when the way environments are built changes, so that envs built the old way are not reused.
ENV_FORMAT = 1
ENV_MARKER = ".spacehub-complete"
PRE_REQUIREMENTS_FILE = "spacehub-pre-requirements.txt"
REQUIREMENTS_FILE = "spacehub-requirements.txt"

# How many lines of uv's output a BuildFailed message carries.
ERROR_TAIL_LINES = 40

# Only these variables of the platform's environment reach uv (and through it, the build backends of any
# sdist a space requires, which is user code): network and TLS settings, never the platform's secrets.
_UV_PASS_THROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT",
    "UV_CONCURRENT_DOWNLOADS",
    "UV_CONCURRENT_BUILDS",
    "UV_CONCURRENT_INSTALLS",
)

# `python_version` comes from the README; uv's `--python` also accepts paths and names, so only allow X.Y[.Z].
_PYTHON_VERSION = re.compile(r"\d+\.\d+(\.\d+)?")


def content_hash(data: Any) -> str:
    """A short, stable hash of JSON-able data (128 bits: plenty for naming folders)."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def tree_hash(root: Path) -> str:
    """Hash a source tree by relative path, type, exec bit and content; `.git` is skipped at any depth."""
    entries: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            if name == ".git":
                continue
            path = base / name
            rel = path.relative_to(root).as_posix()
            entries.append((rel, _entry_digest(path)))
    digest = hashlib.sha256()
    for rel, entry in sorted(entries):
        digest.update(f"{rel}\0{entry}\n".encode())
    return digest.hexdigest()[:32]


def _entry_digest(path: Path) -> str:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "L" + os.readlink(path)
    if stat.S_ISDIR(mode):
        # os.walk does not descend into symlinked dirs (handled above as links), so this is a real dir.
        return "D"
    if stat.S_ISREG(mode):
        file_digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                file_digest.update(chunk)
        return ("X" if mode & 0o111 else "F") + file_digest.hexdigest()
    raise BuildFailed(f"unsupported file type in the source tree: {path.name}")


class ProcessBuilder:
    """Builds `process-env` artifacts (gradio recipe) and `static` artifacts. See the module docstring."""

    name = "process"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- the Builder protocol ---------------------------------------------------------------------------

    def build(self, plan: BuildPlan, src: Path, log: LogFn, inputs: BuildInputs = NO_INPUTS) -> Artifact:
        """`inputs` changes nothing here: variables and secrets reach the app at run time only (never an
        environment), and an environment is named by everything that decides its content, so it is never stale."""
        deadline = time.monotonic() + self.settings.build_timeout_s
        if plan.recipe == "docker":
            raise BuildFailed("sdk: docker needs the Docker runtime; this platform runs spaces as processes")
        if plan.recipe not in ("gradio", "static"):
            raise BuildFailed(f"the process builder cannot build recipe {plan.recipe!r}")
        if plan.apt_packages:
            log(
                "warning: packages.txt asks for system packages that the process runtime cannot install; "
                f"ignoring them: {' '.join(plan.apt_packages)}"
            )
        tree = tree_hash(src)

        if plan.recipe == "static":
            key = content_hash({"kind": "static", "tree": tree})
            app_dir = self._ensure_app(key, src, log, deadline)
            extra = {"runtime": self.name, "tree_hash": tree}
            return Artifact(kind="static", key=key, ref=str(app_dir), extra=extra)

        spec = self.env_spec(plan)
        env_hash = content_hash(spec)
        venv = self._ensure_env(env_hash, spec, log, deadline)
        key = content_hash({"env": env_hash, "tree": tree})
        app_dir = self._ensure_app(key, src, log, deadline)
        return Artifact(
            kind="process-env",
            key=key,
            ref=str(app_dir),
            env_path=str(venv),
            extra={
                "runtime": self.name,  # the jobs start an artifact with the runtime it was built for
                "env_hash": env_hash,
                "tree_hash": tree,
                "python_version": spec["python_version"],
                "gradio_version": spec["gradio_version"],
            },
        )

    # -- environments -----------------------------------------------------------------------------------

    def env_spec(self, plan: BuildPlan) -> dict[str, Any]:
        """Everything that decides what an environment contains; its hash names the env."""
        s = self.settings
        return {
            "format": ENV_FORMAT,
            "python_version": plan.python_version,
            "gradio_version": plan.sdk_version or s.default_gradio_version,
            "pre_requirements": list(plan.pre_requirements),
            "requirements": list(plan.requirements),
            "index_url": s.pip_index_url,
            "extra_index_urls": list(s.pip_extra_index_urls),
            "find_links": list(s.pip_find_links),
        }

    def env_path(self, plan: BuildPlan) -> Path:
        return self.settings.envs_dir / content_hash(self.env_spec(plan))

    def _ensure_env(self, env_hash: str, spec: dict[str, Any], log: LogFn, deadline: float) -> Path:
        venv = self.settings.envs_dir / env_hash
        marker = venv / ENV_MARKER
        versions = f"python {spec['python_version']}, gradio {spec['gradio_version']}"
        what = f"environment {env_hash[:12]} ({versions})"
        # The marker is written last and atomically, so its presence alone proves a whole env: no lock needed.
        if marker.is_file():
            log(f"reusing {what}")
            return venv
        with _exclusive(self.settings.envs_dir / f"{env_hash}.lock", what, log, deadline):
            if marker.is_file():  # another worker finished it while we waited
                log(f"reusing {what}")
                return venv
            if venv.exists():
                log(f"removing a half-built {what}")
                shutil.rmtree(venv)
            if not _PYTHON_VERSION.fullmatch(spec["python_version"]):
                raise BuildFailed(f"python_version must look like 3.11, not {spec['python_version']!r}")
            started = time.monotonic()
            log(f"building {what}")
            self._create_env(venv, spec, log, deadline)
            _write_atomically(marker, json.dumps(spec, indent=2))
            log(f"built {what} in {time.monotonic() - started:.1f}s")
        return venv

    def _create_env(self, venv: Path, spec: dict[str, Any], log: LogFn, deadline: float) -> None:
        self._run_uv(
            [
                "venv",
                f"--python={spec['python_version']}",
                "--python-preference=only-system",  # uv cannot download interpreters here, nor should it
                "--seed",  # apps often `pip install` at run time: let that use the venv's pip, not the host's
                *self._source_args(),
                str(venv),
            ],
            "creating the virtualenv",
            log,
            deadline,
        )
        python = str(venv / "bin" / "python")
        install = ["pip", "install", f"--python={python}", "--compile-bytecode", *self._source_args()]
        # Requirement lines (and the gradio version) come from the user: they reach uv only inside a file, so
        # a line can never become an option of the command.
        if spec["pre_requirements"]:
            pre_file = venv / PRE_REQUIREMENTS_FILE
            pre_file.write_text("\n".join(spec["pre_requirements"]) + "\n")
            self._run_uv([*install, "-r", str(pre_file)], "installing pre-requirements", log, deadline)
        req_file = venv / REQUIREMENTS_FILE
        # gradio goes in the same resolve as the requirements, so a conflicting pin is reported, not ignored.
        req_file.write_text("\n".join([f"gradio=={spec['gradio_version']}", *spec["requirements"]]) + "\n")
        self._run_uv([*install, "-r", str(req_file)], "installing requirements", log, deadline)

    def _source_args(self) -> list[str]:
        """Package sources, given explicitly: uv ignores pip's config files and env vars."""
        s = self.settings
        args = [f"--index-url={s.pip_index_url}"] if s.pip_index_url else []
        args += [f"--extra-index-url={url}" for url in s.pip_extra_index_urls]
        args += [f"--find-links={link}" for link in s.pip_find_links]
        return args

    def uv_cache_dir(self) -> Path:
        """The host's UV_CACHE_DIR when set (a warm cache shared with other tools), else one in data_dir."""
        configured = os.environ.get("UV_CACHE_DIR")
        return Path(configured) if configured else self.settings.data_dir / "cache" / "uv"

    def _uv_env(self) -> dict[str, str]:
        env = {key: os.environ[key] for key in _UV_PASS_THROUGH if key in os.environ}
        env.setdefault("PATH", "/usr/bin:/bin")
        env["UV_CACHE_DIR"] = str(self.uv_cache_dir())
        env["UV_PYTHON_DOWNLOADS"] = "never"
        env["NO_COLOR"] = "1"
        return env

    def _run_uv(self, args: list[str], step: str, log: LogFn, deadline: float) -> None:
        """Run uv, streaming its output line by line to `log`; BuildFailed with the tail on error/timeout."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BuildFailed(f"build timed out after {self.settings.build_timeout_s}s (before {step})")
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
        proc = subprocess.Popen(
            [uv.find_uv_bin(), "--no-config", "--color=never", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # uv reports progress on stderr: merge to keep the order
            env=self._uv_env(),
            cwd=self.settings.data_dir,  # never the user's tree: uv would read a pyproject.toml/uv.toml there
            start_new_session=True,  # so a timeout kills uv and any build backend it spawned
            preexec_fn=_die_with_parent,  # a build job killed under it (kill -9) leaves no uv behind
            text=True,
            errors="replace",
        )
        timed_out = threading.Event()

        def kill_on_timeout() -> None:
            timed_out.set()
            _kill_group(proc)

        timer = threading.Timer(remaining, kill_on_timeout)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                tail.append(line)
                log(line)
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:  # `log` raised (e.g. the build was cancelled): take uv down with us
                _kill_group(proc)
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        output = "\n".join(tail)
        if timed_out.is_set():
            limit = self.settings.build_timeout_s
            raise BuildFailed(f"build timed out after {limit}s while {step}:\n{output}")
        if code != 0:
            raise BuildFailed(f"{step} failed (uv exited with {code}):\n{output}")

    # -- app code ---------------------------------------------------------------------------------------

    def _ensure_app(self, key: str, src: Path, log: LogFn, deadline: float) -> Path:
        apps = self.settings.apps_dir
        app_dir = apps / key
        # The copy is renamed into place as its last step, so an existing folder is always complete.
        if app_dir.is_dir():
            log(f"reusing app code {key[:12]}")
            return app_dir
        with _exclusive(apps / f"{key}.lock", f"app code {key[:12]}", log, deadline):
            if app_dir.is_dir():
                log(f"reusing app code {key[:12]}")
                return app_dir
            partial = apps / f".partial-{key}"
            if partial.exists():  # left by a build that died mid-copy; we hold the lock, so it is ours
                shutil.rmtree(partial)
            shutil.copytree(src, partial, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            os.rename(partial, app_dir)
            log(f"copied app code {key[:12]}")
        return app_dir


@contextmanager
def _exclusive(lock_path: Path, what: str, log: LogFn, deadline: float) -> Iterator[None]:
    """Hold an flock on `lock_path`; wait (logging once) while another worker holds it, up to `deadline`."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        waited = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log(f"waiting for another build of {what}")
                    waited = True
                if time.monotonic() > deadline:
                    raise BuildFailed(f"build timed out waiting for another build of {what}") from None
                time.sleep(0.25)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# Without it a uv whose build job was killed would run on, writing into an environment the retried build is making
# again.
_die_with_parent = signal_on_parent_death(signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    if proc.returncode is not None:  # already reaped: its pid may belong to someone else now
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
