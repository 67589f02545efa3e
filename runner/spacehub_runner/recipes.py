"""From a checked-out tree and its README config to a BuildPlan: which recipe, which versions, which packages.

Nothing from a file is ever passed on raw: requirement lines, apt package names and versions are checked here,
and builders only ever see the resulting plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from spacehub.errors import NoAppFile, SpaceConfigError
from spacehub.settings import Settings
from spacehub.spaceconfig import SpaceConfig, parse_config
from spacehub_runner.plugs import BuildPlan

APT_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,127}$")
# Package sources are the platform's (settings), so index options in requirements.txt are ignored.
IGNORED_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--trusted-host",
                   "--prefer-binary", "--pre")
MAX_REQUIREMENT_LINES = 500


@dataclass
class Recipe:
    plan: BuildPlan
    config: SpaceConfig
    warnings: list[str] = field(default_factory=list)


def _read_text(tree: Path, name: str) -> str | None:
    path = tree / name
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpaceConfigError(f"{name} is not UTF-8 text") from None


def _requirement_lines(tree: Path, name: str, warnings: list[str]) -> tuple[str, ...]:
    text = _read_text(tree, name)
    if text is None:
        return ()
    lines: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            option = line.split("=", 1)[0].split()[0]
            if option in IGNORED_OPTIONS:
                warnings.append(f"{name} line {number}: '{option}' ignored; package sources are the platform's")
                continue
            raise SpaceConfigError(f"{name} line {number}: pip option '{option}' is not allowed")
        if "\0" in line or len(line) > 500:
            raise SpaceConfigError(f"{name} line {number}: not a requirement")
        lines.append(line)
    if len(lines) > MAX_REQUIREMENT_LINES:
        raise SpaceConfigError(f"{name} has more than {MAX_REQUIREMENT_LINES} requirements")
    return tuple(lines)


def _apt_packages(tree: Path) -> tuple[str, ...]:
    text = _read_text(tree, "packages.txt")
    if text is None:
        return ()
    names = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not APT_PACKAGE.match(line):
            raise SpaceConfigError(f"packages.txt line {number}: {line[:60]!r} is not a Debian package name")
        names.append(line)
    return tuple(names)


def plan_for(tree: Path, default_sdk: str | None, settings: Settings) -> Recipe:
    """Raise NoAppFile or SpaceConfigError (naming the field) when the tree cannot run."""
    config = parse_config(_read_text(tree, "README.md"))
    sdk = config.sdk or default_sdk
    if sdk is None:
        raise SpaceConfigError("README.md field 'sdk' is missing: say gradio, docker or static")
    python = config.python_version or settings.python_versions[0]
    if python not in settings.python_versions:
        raise SpaceConfigError(f"README.md field 'python_version': {python} is not available "
                               f"(available: {', '.join(settings.python_versions)})")
    warnings: list[str] = []
    if sdk == "docker":
        if not (tree / "Dockerfile").is_file():
            raise NoAppFile("no Dockerfile at the root of the repository (sdk: docker)")
        plan = BuildPlan(recipe="docker", python_version=python, app_port=config.app_port or 7860)
        return Recipe(plan, config, warnings)
    if sdk == "static":
        app_file = config.app_file or "index.html"
        if not (tree / app_file).is_file():
            raise NoAppFile(f"no {app_file} in the repository (sdk: static)")
        return Recipe(BuildPlan(recipe="static", python_version=python, app_file=app_file), config, warnings)
    app_file = config.app_file or "app.py"
    if not app_file.endswith(".py"):
        raise SpaceConfigError(f"README.md field 'app_file': {app_file!r} must be a Python file (.py)")
    if not (tree / app_file).is_file():
        raise NoAppFile(f"no {app_file} in the repository (README.md field 'app_file')")
    plan = BuildPlan(
        recipe="gradio", python_version=python, sdk_version=config.sdk_version or settings.default_gradio_version,
        app_file=app_file, app_port=config.app_port or 7860,
        requirements=_requirement_lines(tree, "requirements.txt", warnings),
        pre_requirements=_requirement_lines(tree, "pre-requirements.txt", warnings),
        apt_packages=_apt_packages(tree),
    )
    return Recipe(plan, config, warnings)
