"""Build hook: the proxy's per-request path, compiled.

The proxy forwards every request to every space, so the CPU it spends per request bounds its throughput. Two
compiled parts:
  - the wire layer (`spacehub/proxy/_wire.pyx`, Cython over llhttp's C sources): parsing, checking and rewriting
    heads without a Python object per header. llhttp is not kept in this repository: its C sources are taken, at
    build time, from the source distribution of the pinned httptools (HTTPTOOLS, checked against its sha256),
    which vendors it, so that both wire layers parse with the same llhttp. The sdist is fetched with pip into
    build/llhttp/ once and reused; offline, put the file there (build/llhttp/httptools-<version>.tar.gz);
  - the per-request modules, compiled by mypyc from the same typed Python source, unchanged: native classes
    with C attribute access, direct calls between them, no interpreter loop.
Everything else stays plain Python.

`SPACEHUB_PURE_PYTHON=1` (or a machine without a C compiler) builds without them: the proxy then runs the
reference wire layer (`wire.py`, on httptools) and the plain-Python modules, with the same behaviour and less
speed; without llhttp's sources (offline, no sdist in build/llhttp/) the build says so and the reference wire
layer serves beside the compiled modules. `spacehub.proxy.compiled()` and `spacehub.proxy.wireimpl.NATIVE` tell
which is running.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = os.path.join("platform", "spacehub", "proxy")

# The httptools release whose sdist vendors the llhttp the compiled wire layer is built on: the same pin as the
# reference wire layer's dependency in pyproject.toml (tests/unit/test_proxy_build.py holds them together).
HTTPTOOLS = "0.9.0"
HTTPTOOLS_SHA256 = "d484ebb7e3a3f3597b0f645fbd1b85633674ca808c1f5ba11c2caf7c66f5c8b6"  # httptools-0.9.0.tar.gz
LLHTTP_CACHE = os.path.join(HERE, "build", "llhttp")
LLHTTP_FILES = {  # in the sdist, under httptools-<version>/vendor/llhttp/ -> in our cache folder
    "include/llhttp.h": "llhttp.h",
    "src/llhttp.c": "llhttp.c",
    "src/api.c": "api.c",
    "src/http.c": "http.c",
    "LICENSE-MIT": "LICENSE-MIT",
}

# The modules a request passes through. Not errors.py: its classes are subclassed with class-level `status`/`code`
# overrides (by resolvers too), which mypyc's native classes would not see. (The platform's resolver, spacehub.edge,
# is plain Python: it pulls in the database layer.)
COMPILED_PROXY_MODULES = [
    "activity",
    "channel",
    "connection",
    "exchange",
    "headers",
    "http1",
    "pool",
    "relay",
    "routing",
    "server",
    "traffic",
    "wire",
    "wireimpl",
]


class LlhttpUnavailable(Exception):
    pass


def llhttp_sources() -> str:
    """The folder with llhttp's header and C files, taken from the pinned httptools sdist (fetched once)."""
    folder = os.path.join(LLHTTP_CACHE, f"httptools-{HTTPTOOLS}")
    if all(os.path.isfile(os.path.join(folder, name)) for name in LLHTTP_FILES.values()):
        return folder
    sdist = _httptools_sdist()
    prefix = f"httptools-{HTTPTOOLS}/vendor/llhttp/"
    staging = tempfile.mkdtemp(dir=LLHTTP_CACHE)
    try:
        with tarfile.open(sdist) as archive:
            for inner, name in LLHTTP_FILES.items():
                try:
                    member = archive.getmember(prefix + inner)
                except KeyError:
                    raise LlhttpUnavailable(f"{os.path.basename(sdist)} has no {prefix + inner}") from None
                source = archive.extractfile(member) if member.isfile() else None
                if source is None:
                    raise LlhttpUnavailable(f"{prefix + inner} in {os.path.basename(sdist)} is not a file")
                with source, open(os.path.join(staging, name), "wb") as out:
                    shutil.copyfileobj(source, out)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)  # whole or not at all: a half-extracted folder is never taken for one
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _httptools_sdist() -> str:
    """build/llhttp/httptools-<version>.tar.gz, checked against its sha256; downloaded with pip if absent."""
    os.makedirs(LLHTTP_CACHE, exist_ok=True)
    sdist = os.path.join(LLHTTP_CACHE, f"httptools-{HTTPTOOLS}.tar.gz")
    if not os.path.isfile(sdist):
        requirement = os.path.join(LLHTTP_CACHE, "requirement.txt")
        with open(requirement, "w") as out:
            out.write(f"httptools=={HTTPTOOLS} --hash=sha256:{HTTPTOOLS_SHA256}\n")
        # pip's own environment, not a build-isolation one (whose PYTHONPATH hides the interpreter's pip).
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PIP_TARGET")}
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                   "--require-hashes", "-r", requirement, "-d", LLHTTP_CACHE]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LlhttpUnavailable(f"pip download did not run: {exc}") from None
        if done.returncode != 0 or not os.path.isfile(sdist):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise LlhttpUnavailable(f"pip download of the httptools=={HTTPTOOLS} sdist failed: {last}")
    digest = hashlib.sha256()
    with open(sdist, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != HTTPTOOLS_SHA256:
        raise LlhttpUnavailable(f"{sdist} is not the httptools {HTTPTOOLS} sdist (sha256 {digest.hexdigest()})")
    return sdist


def wire_extension() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:  # a build environment without Cython (the build requirements name it)
        print("spacehub: Cython not available, the proxy uses its reference wire layer", file=sys.stderr)
        return []
    try:
        llhttp = llhttp_sources()
    except LlhttpUnavailable as exc:
        print(
            f"spacehub: llhttp's C sources are not available ({exc}); the proxy's compiled wire layer is not "
            f"built and the reference wire layer (wire.py, on httptools) serves. To build it offline, put "
            f"httptools-{HTTPTOOLS}.tar.gz (sha256 {HTTPTOOLS_SHA256}) in {LLHTTP_CACHE}/ and build again.",
            file=sys.stderr,
        )
        return []
    extension = Extension(
        "spacehub.proxy._wire",
        sources=[os.path.join(PROXY, "_wire.pyx")] + [os.path.join(llhttp, f) for f in ("llhttp.c", "api.c", "http.c")],
        include_dirs=[llhttp],  # (not a `depends`: that would ship the header in spacehub's own sdist)
        # Where its llhttp came from, readable at run time (`_wire.LLHTTP_FROM`).
        define_macros=[("SPACEHUB_LLHTTP_FROM", f'"httptools-{HTTPTOOLS} sdist"')],
        extra_compile_args=["-O3"],
        optional=True,  # no C compiler: setuptools warns and the reference wire layer is used
    )
    return cythonize(
        [extension],
        build_dir=os.path.join("build", f"cython-py{sys.version_info[0]}{sys.version_info[1]}"),
        compiler_directives={"language_level": "3"},
        quiet=True,
    )


def mypyc_extensions() -> list[Extension]:
    try:
        from mypyc.build import mypycify
    except ImportError:  # a build environment without mypy (the build requirements name it)
        print("spacehub: mypyc not available, the proxy is installed as plain Python", file=sys.stderr)
        return []
    paths = [os.path.join(PROXY, f"{name}.py") for name in COMPILED_PROXY_MODULES]
    os.environ.setdefault("MYPYPATH", os.pathsep.join([os.path.join(HERE, "platform"), os.path.join(HERE, "runner")]))
    extensions = mypycify(
        ["--config-file", os.path.join(HERE, "pyproject.toml"), *paths],
        opt_level="3",
        group_name="spacehub.proxy._compiled",  # the shared runtime library lives inside the package
        target_dir=os.path.join("build", f"mypyc-py{sys.version_info[0]}{sys.version_info[1]}"),
    )
    for extension in extensions:
        extension.optional = True  # no C compiler: setuptools warns and the source modules are used
    return extensions


def extensions() -> list[Extension]:
    if os.environ.get("SPACEHUB_PURE_PYTHON") == "1":
        return []
    return wire_extension() + mypyc_extensions()


setup(ext_modules=extensions())
