"""Build hook: compiles the proxy's per-request path to C with mypyc.

The proxy forwards every request to every space, so its per-request Python (parsing, header rewriting, the
relay state machine) is what bounds its throughput. mypyc compiles those modules from the same typed Python
source, unchanged: native classes with C attribute access, direct calls between them, no interpreter loop.
Everything else stays plain Python.

`SPACEHUB_PURE_PYTHON=1` (or a machine without a C compiler) builds without it: the same modules then run as
plain Python, with the same behaviour and less speed. `spacehub.proxy.COMPILED` tells which one is running.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

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
]


def proxy_extensions() -> list:
    if os.environ.get("SPACEHUB_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # a build environment without mypy (the build requirements name it)
        print("spacehub: mypyc not available, the proxy is installed as plain Python", file=sys.stderr)
        return []

    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join("platform", "spacehub", "proxy", f"{name}.py") for name in COMPILED_PROXY_MODULES]
    os.environ.setdefault("MYPYPATH", os.pathsep.join([os.path.join(here, "platform"), os.path.join(here, "runner")]))
    extensions = mypycify(
        ["--config-file", os.path.join(here, "pyproject.toml"), *paths],
        opt_level="3",
        group_name="spacehub.proxy._compiled",  # the shared runtime library lives inside the package
        target_dir=os.path.join("build", f"mypyc-py{sys.version_info[0]}{sys.version_info[1]}"),
    )
    for extension in extensions:
        extension.optional = True  # no C compiler: setuptools warns and the source modules are used
    return extensions


setup(ext_modules=proxy_extensions())
