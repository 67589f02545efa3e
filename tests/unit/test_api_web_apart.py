"""The HTTP API and the web UI do not import each other: the entry point (`spacehub.app`) puts them side by side,
and what both need per request lives in modules of its own (`spacehub.requestdeps`, `spacehub.httperrors`).

Read from the source (every import statement, at any depth, relative ones resolved), not from a running process."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "spacehub"


def imported_modules(source: str, module: str) -> set[str]:
    """Every module an import statement of `source` (the text of `module`) names; `from a import b` names both
    `a` and `a.b`, since b may be a submodule."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def crossings(folder: str, other: str) -> list[str]:
    """`file: module` for each import in spacehub/<folder>/ of spacehub.<other> or anything under it."""
    forbidden = f"spacehub.{other}"
    bad = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts)
        if path.name == "__init__.py":
            module += ".__init__"  # relative imports in a package's __init__ resolve against the package
        for name in imported_modules(path.read_text(), module):
            if name == forbidden or name.startswith(forbidden + "."):
                bad.append(f"{path.relative_to(PACKAGE)}: {name}")
    return bad


def test_the_api_imports_nothing_of_the_web_ui() -> None:
    assert list((PACKAGE / "api").glob("*.py")), "no API modules found: the test would check nothing"
    assert crossings("api", "web") == []


def test_the_web_ui_imports_nothing_of_the_api() -> None:
    assert list((PACKAGE / "web").glob("*.py")), "no web modules found: the test would check nothing"
    assert crossings("web", "api") == []


def test_the_check_sees_every_form_of_import() -> None:
    module = "spacehub.web.pages"
    for statement in ("import spacehub.api.deps", "from spacehub.api.deps import x", "from spacehub import api",
                      "from ..api import deps", "from .. import api", "def f():\n    from spacehub.api import app"):
        names = imported_modules(statement, module)
        assert any(name == "spacehub.api" or name.startswith("spacehub.api.") for name in names), statement
    assert not any(name.startswith("spacehub.api") for name in imported_modules("from . import render", module))
