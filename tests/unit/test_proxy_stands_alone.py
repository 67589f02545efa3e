"""The proxy (`spacehub/proxy/`) imports nothing of the rest of spacehub: it is given a resolver and hooks, so it
could be a package of its own. Checked over the source (every module, the Cython wire layer too), and by
importing it in a fresh interpreter where the rest of spacehub cannot be imported."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PROXY = Path(__file__).resolve().parents[2] / "platform" / "spacehub" / "proxy"


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_proxy_module_imports_the_rest_of_spacehub() -> None:
    sources = sorted(PROXY.glob("*.py")) + sorted(PROXY.glob("*.pyi"))
    assert len(sources) > 10
    outside = {f"{path.name}: {name}" for path in sources for name in imported_modules(path)
               if (name == "spacehub" or name.startswith("spacehub.")) and not name.startswith("spacehub.proxy")}
    for path in PROXY.glob("*.pyx"):
        for name in re.findall(r"^\s*(?:from|c?import)\s+(spacehub[\w.]*)", path.read_text(), re.MULTILINE):
            if not name.startswith("spacehub.proxy"):
                outside.add(f"{path.name}: {name}")
    assert outside == set()


def test_the_proxy_imports_with_the_rest_of_spacehub_unimportable() -> None:
    """Every other module of spacehub is made to fail on import; the proxy's modules still load."""
    code = f"""
import importlib, importlib.abc, pkgutil, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("spacehub.") and not name.startswith("spacehub.proxy"):
            raise ImportError("the proxy imported " + name)
        return None

sys.meta_path.insert(0, Refuse())
import spacehub.proxy
for info in pkgutil.iter_modules([{str(PROXY)!r}]):
    importlib.import_module("spacehub.proxy." + info.name)
print("ok", sorted(m for m in sys.modules if m.startswith("spacehub")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
    assert "spacehub.proxy.server" in done.stdout and "spacehub.errors" not in done.stdout


def test_the_gateway_answers_a_platform_error_as_the_proxy_s_own() -> None:
    """The boundary: a platform error raised while resolving (the gate, a wake) reaches the proxy as a ProxyError
    with the same status, code and message."""
    import asyncio

    import pytest

    from spacehub.edge.gateway import SpaceResolver
    from spacehub.errors import Unauthorized
    from spacehub.proxy.errors import ProxyError

    resolver = SpaceResolver.__new__(SpaceResolver)  # no database or Redis: only the mapping is under test

    async def refuse(host: str, headers: list[tuple[bytes, bytes]], target: bytes) -> None:
        raise Unauthorized("sign in to see this space")

    resolver._resolve = refuse  # type: ignore[method-assign,assignment]
    with pytest.raises(ProxyError) as caught:
        asyncio.run(resolver("page.space.localhost", [], b"/"))
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        401, "Unauthorized", "sign in to see this space")
    assert isinstance(caught.value.__cause__, Unauthorized)
