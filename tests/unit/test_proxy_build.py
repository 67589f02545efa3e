"""The proxy that the tests (and `make bench`) exercise is the compiled one `make install` builds.

setup.py compiles the proxy's wire layer (Cython over llhttp, from the pinned httptools sdist) and its
per-request modules (mypyc); a build that silently fell back to plain Python would still pass every behaviour
test while serving at a fraction of the speed, so the test run says so.
`SPACEHUB_PURE_PYTHON=1` is the deliberate plain-Python build.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

import pytest

import spacehub.proxy
from spacehub.proxy import activity, connection, headers, http1, relay, server, traffic, wireimpl

ROOT = Path(__file__).resolve().parents[2]


def test_the_per_request_modules_run_compiled_unless_plain_python_was_chosen() -> None:
    expected = os.environ.get("SPACEHUB_PURE_PYTHON") != "1"
    assert spacehub.proxy.compiled() is expected
    for module in (activity, connection, headers, http1, relay, server, traffic):
        origin = module.__spec__.origin if module.__spec__ is not None else ""
        assert origin is not None and origin.endswith(".so") is expected, f"{module.__name__}: {origin}"


def test_the_wire_layer_is_the_compiled_one_unless_plain_python_was_chosen() -> None:
    expected = os.environ.get("SPACEHUB_PURE_PYTHON") != "1"
    assert wireimpl.NATIVE is expected
    assert (http1.RequestHead.__module__ == "spacehub.proxy._wire") is expected


def test_the_compiled_wire_layer_is_not_older_than_its_source() -> None:
    if not wireimpl.NATIVE:
        assert os.environ.get("SPACEHUB_PURE_PYTHON") == "1"
        return
    proxy = Path(spacehub.proxy.__file__).parent
    built = next(proxy.glob("_wire.cpython-*.so"))
    # (llhttp's sources are those of the pinned sdist, checked by hash at build time: see the test below.)
    source = proxy / "_wire.pyx"
    assert built.stat().st_mtime >= source.stat().st_mtime, f"{built.name} predates {source.name}: make install"


def test_the_compiled_wire_layer_is_built_on_the_llhttp_of_the_reference_layers_httptools() -> None:
    # setup.py takes llhttp from the httptools sdist it pins; the reference wire layer runs on the installed
    # httptools: the same release, so both parse with the same llhttp (the parity tests compare their verdicts).
    setup_py = (ROOT / "setup.py").read_text()
    pinned = re.search(r'^HTTPTOOLS = "([^"]+)"', setup_py, re.MULTILINE)
    assert pinned is not None
    assert f'"httptools=={pinned[1]}"' in (ROOT / "pyproject.toml").read_text()
    assert importlib.metadata.version("httptools") == pinned[1]
    assert not (Path(spacehub.proxy.__file__).parent / "llhttp").exists()  # not kept in the repository
    if not wireimpl.NATIVE:
        assert os.environ.get("SPACEHUB_PURE_PYTHON") == "1"
        return
    from spacehub.proxy import _wire

    source = f"httptools-{pinned[1]} sdist"
    assert source == _wire.LLHTTP_FROM
    assert _wire.LLHTTP_VERSION == (9, 4, 3)  # what httptools 0.9.0 vendors: bump together with the pin


def test_compiled_reports_the_source_build_as_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = relay.__spec__
    assert spec is not None
    monkeypatch.setattr(spec, "origin", "/somewhere/spacehub/proxy/relay.py")
    assert not spacehub.proxy.compiled()


def test_the_compiled_build_is_not_older_than_its_source() -> None:
    # An editable install compiles in place: a source edited after the build would otherwise be silently
    # ignored (the .so shadows the .py). `make test` rebuilds when the sources change.
    if not spacehub.proxy.compiled():
        assert os.environ.get("SPACEHUB_PURE_PYTHON") == "1"
        return
    for module in (activity, connection, headers, http1, relay, server, traffic):
        origin = Path(module.__spec__.origin or "") if module.__spec__ is not None else Path()
        source = Path(spacehub.proxy.__file__).parent / (module.__name__.rpartition(".")[2] + ".py")
        built = next(source.parent.glob(source.stem + ".cpython-*.so"))
        assert built.stat().st_mtime >= source.stat().st_mtime, f"{built.name} predates {source.name}: make install"
        assert origin.name == built.name
