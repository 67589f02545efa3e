"""Build hook: the proxy's per-request path, compiled.

The proxy forwards every request to every space, so the CPU it spends per request bounds its throughput. Two
compiled parts:
  - the wire layer (`spacehub/proxy/_wire.pyx`, Cython over the vendored llhttp in `spacehub/proxy/llhttp/`):
    parsing, checking and rewriting heads without a Python object per header;
  - the per-request modules, compiled by mypyc from the same typed Python source, unchanged: native classes
    with C attribute access, direct calls between them, no interpreter loop.
Everything else stays plain Python.

`SPACEHUB_PURE_PYTHON=1` (or a machine without a C compiler) builds without them: the proxy then runs the
reference wire layer (`wire.py`, on httptools) and the plain-Python modules, with the same behaviour and less
speed. `spacehub.proxy.compiled()` and `spacehub.proxy.wireimpl.NATIVE` tell which is running.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = os.path.join("platform", "spacehub", "proxy")

# The modules a request passes through. Not errors.py: its classes extend the platform's error hierarchy, whose
# class-level `status`/`code` overrides a compiled subclass would not see. Not gateway.py: it pulls in the
# database layer.
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
    "wire",
    "wireimpl",
]


def wire_extension() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:  # a build environment without Cython (the build requirements name it)
        print("spacehub: Cython not available, the proxy uses its reference wire layer", file=sys.stderr)
        return []
    llhttp = os.path.join(PROXY, "llhttp")
    extension = Extension(
        "spacehub.proxy._wire",
        sources=[os.path.join(PROXY, "_wire.pyx")] + [os.path.join(llhttp, f) for f in ("llhttp.c", "api.c", "http.c")],
        include_dirs=[llhttp],
        depends=[os.path.join(llhttp, "llhttp.h")],
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
