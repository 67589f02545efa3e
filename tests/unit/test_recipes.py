from pathlib import Path

import pytest

from spacehub.errors import NoAppFile, SpaceConfigError
from spacehub.settings import Settings
from spacehub_runner.recipes import plan_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", python_versions=["3.11"], default_gradio_version="6.31.0")


def write(tree: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    return tree


def test_gradio_plan_from_readme_and_requirements(tmp_path, settings):
    tree = write(tmp_path, {
        "README.md": "---\nsdk: gradio\nsdk_version: 5.49.1\n---\n",
        "app.py": "print()",
        "requirements.txt": "numpy>=1.26  # arrays\n\n# comment\n--extra-index-url https://example.invalid/\npillow\n",
        "packages.txt": "ffmpeg\nlibsm6\n",
    })
    recipe = plan_for(tree, None, settings)
    assert recipe.plan.recipe == "gradio"
    assert recipe.plan.sdk_version == "5.49.1"
    assert recipe.plan.requirements == ("numpy>=1.26", "pillow")
    assert recipe.plan.apt_packages == ("ffmpeg", "libsm6")
    assert any("--extra-index-url" in w for w in recipe.warnings)


def test_defaults_come_from_settings_and_the_space(tmp_path, settings):
    recipe = plan_for(write(tmp_path, {"app.py": ""}), "gradio", settings)
    assert (recipe.plan.sdk_version, recipe.plan.python_version, recipe.plan.app_file) == ("6.31.0", "3.11", "app.py")


def test_missing_app_file_is_no_app_file(tmp_path, settings):
    with pytest.raises(NoAppFile, match="app.py"):
        plan_for(write(tmp_path, {"README.md": "---\nsdk: gradio\n---\n"}), None, settings)
    with pytest.raises(NoAppFile, match="Dockerfile"):
        plan_for(write(tmp_path, {"README.md": "---\nsdk: docker\n---\n"}), None, settings)


def test_unavailable_python_names_what_is_available(tmp_path, settings):
    tree = write(tmp_path, {"README.md": "---\nsdk: gradio\npython_version: '3.9'\n---\n", "app.py": ""})
    with pytest.raises(SpaceConfigError, match=r"python_version.*3\.9.*available: 3\.11"):
        plan_for(tree, None, settings)


@pytest.mark.parametrize(("name", "text", "match"), [
    ("requirements.txt", "-e git+https://x/y\n", "option '-e'"),
    ("requirements.txt", "--requirement other.txt\n", "option '--requirement'"),
    ("packages.txt", "curl; rm -rf /\n", "packages.txt line 1"),
    ("packages.txt", "Bad_Name\n", "not a Debian package"),
])
def test_hostile_package_lists_are_refused(tmp_path, settings, name, text, match):
    tree = write(tmp_path, {"README.md": "---\nsdk: gradio\n---\n", "app.py": "", name: text})
    with pytest.raises(SpaceConfigError, match=match):
        plan_for(tree, None, settings)


def test_missing_sdk_is_a_config_error(tmp_path, settings):
    with pytest.raises(SpaceConfigError, match="sdk"):
        plan_for(write(tmp_path, {"app.py": ""}), None, settings)
