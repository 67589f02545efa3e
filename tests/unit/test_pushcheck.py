"""The pre-receive rules of a git push, on real git objects in a scratch bare repository (no server)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from spacehub.pushcheck import PushLimits, PushRefused, RefUpdate, check_push, entry_violation, is_dotgit_alias

ZERO = "0" * 40
LIMITS = PushLimits(max_file_bytes=1000, max_tree_bytes=1500, max_entries=5)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(path)], check=True)
    return path


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(repo), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(["git", f"--git-dir={repo}", *args], input=stdin, capture_output=True, check=True,
                          env=env)
    return done.stdout.decode().strip()


def _blob(repo: Path, data: bytes) -> str:
    return _git(repo, "hash-object", "-w", "--stdin", stdin=data)


def _tree(repo: Path, *entries: tuple[str, str, str, str]) -> str:
    lines = "".join(f"{mode} {kind} {oid}\t{name}\n" for mode, kind, oid, name in entries)
    return _git(repo, "mktree", stdin=lines.encode())


def _commit(repo: Path, tree: str, *parents: str) -> str:
    return _git(repo, "commit-tree", tree, *[arg for parent in parents for arg in ("-p", parent)], "-m", "c")


def _base(repo: Path) -> str:
    """main at one good commit (a README), as a space repository has it after a first push."""
    commit = _commit(repo, _tree(repo, ("100644", "blob", _blob(repo, b"hello\n"), "README.md")))
    _git(repo, "update-ref", "refs/heads/main", commit)
    return commit


def _refusal(repo: Path, *updates: RefUpdate, limits: PushLimits = LIMITS) -> str:
    with pytest.raises(PushRefused) as refused:
        check_push(list(updates), limits, git_dir=str(repo))
    return str(refused.value)


def test_a_plain_fast_forward_passes(repo):
    base = _base(repo)
    readme = _blob(repo, b"hello again\n")
    code = _blob(repo, b"print(1)\n")
    folder = _tree(repo, ("100755", "blob", code, "run.sh"))
    tip = _commit(repo, _tree(repo, ("100644", "blob", readme, "README.md"), ("040000", "tree", folder, "bin")), base)
    check_push([RefUpdate(base, tip, "refs/heads/main")], LIMITS, git_dir=str(repo))


def test_the_first_push_to_an_empty_repository_passes(repo):
    tip = _commit(repo, _tree(repo, ("100644", "blob", _blob(repo, b"x"), "app.py")))
    check_push([RefUpdate(ZERO, tip, "refs/heads/main")], LIMITS, git_dir=str(repo))


@pytest.mark.parametrize("name", [".g\u200cit", ".GIT", ".git.", ".git ", "GIT~1", ".git::$INDEX_ALLOCATION",
                                  "\ufeff.Git"])
def test_every_spelling_of_dot_git_is_refused(repo, name):
    base = _base(repo)
    inner = _tree(repo, ("100644", "blob", _blob(repo, b"[core]\n"), "config"))
    tip = _commit(repo, _tree(repo, ("040000", "tree", inner, name)), base)
    assert ".git folders are not allowed" in _refusal(repo, RefUpdate(base, tip, "refs/heads/main"))


def test_a_refused_entry_deep_in_history_is_found_and_named(repo):
    base = _base(repo)
    link = _blob(repo, b"/etc/passwd")
    deep = _tree(repo, ("120000", "blob", link, "passwd"))
    middle = _commit(repo, _tree(repo, ("040000", "tree", deep, "etc")), base)
    tip = _commit(repo, _tree(repo, ("100644", "blob", _blob(repo, b"clean"), "README.md")), middle)
    message = _refusal(repo, RefUpdate(base, tip, "refs/heads/main"))
    assert message == "'etc/passwd': symbolic links are not allowed"


def test_the_tip_tree_caps_apply(repo):
    base = _base(repo)
    many = _tree(repo, *[("100644", "blob", _blob(repo, str(n).encode()), f"f{n}") for n in range(6)])
    tip = _commit(repo, many, base)
    assert "more than 5 entries" in _refusal(repo, RefUpdate(base, tip, "refs/heads/main"))
    big = _tree(repo, ("100644", "blob", _blob(repo, b"a" * 900), "a"),
                ("100644", "blob", _blob(repo, b"b" * 900), "b"))
    tip = _commit(repo, big, base)
    assert "more than 1500 bytes" in _refusal(repo, RefUpdate(base, tip, "refs/heads/main"))


def test_a_file_over_the_limit_is_refused_even_when_a_later_commit_drops_it(repo):
    base = _base(repo)
    heavy = _commit(repo, _tree(repo, ("100644", "blob", _blob(repo, b"x" * 1001), "model.bin")), base)
    tip = _commit(repo, _tree(repo, ("100644", "blob", _blob(repo, b"small"), "README.md")), heavy)
    assert _refusal(repo, RefUpdate(base, tip, "refs/heads/main")) == (
        "'model.bin': the file is 1001 bytes, over the limit of 1000")


def test_a_path_too_long_for_the_archive_rules_is_refused(repo):
    base = _base(repo)
    tree = _tree(repo, ("100644", "blob", _blob(repo, b"x"), "f"))
    for _ in range(5):
        tree = _tree(repo, ("040000", "tree", tree, "d" * 250))
    tip = _commit(repo, tree, base)
    assert "path longer than 1024 bytes" in _refusal(repo, RefUpdate(base, tip, "refs/heads/main"))


def test_an_unrelated_history_is_not_a_fast_forward(repo):
    base = _base(repo)
    other = _commit(repo, _tree(repo, ("100644", "blob", _blob(repo, b"other"), "README.md")))
    assert "non-fast-forward" in _refusal(repo, RefUpdate(base, other, "refs/heads/main"))


def test_branches_only_and_no_deletion(repo):
    base = _base(repo)
    check_push([RefUpdate(ZERO, base, "refs/heads/dev")], LIMITS, git_dir=str(repo))  # other branches are stored
    assert "('refs/tags/v1' was refused)" in _refusal(repo, RefUpdate(ZERO, base, "refs/tags/v1"))
    assert "cannot be deleted" in _refusal(repo, RefUpdate(base, ZERO, "refs/heads/main"))
    assert "cannot be deleted" in _refusal(repo, RefUpdate(base, ZERO, "refs/heads/dev"))


@pytest.mark.parametrize(("mode", "name", "rule"), [
    (b"100644", b"ok.txt", None),
    (b"40000", b"folder", None),
    (b"120000", b"link", "symbolic links are not allowed"),
    (b"160000", b"sub", "submodules are not allowed"),
    (b"100664", b"odd", "file mode 100664 is not allowed (only files and folders)"),
    (b"100644", b"..", "invalid name in a tree"),
    (b"100644", b"a\\b", "backslash in the path (a Windows separator)"),
    (b"100644", b"bell\x07", "control character in the path"),
    (b"100644", b"\xff\xfe", "the path is not valid UTF-8"),
])
def test_entry_rules(mode, name, rule):
    assert entry_violation(mode, name) == rule


def test_dot_git_aliases_leave_ordinary_names_alone():
    assert not any(is_dotgit_alias(name) for name in (".github", ".gitignore", "git", ".gitattributes", "x.git"))


def test_a_space_readme_with_yaml_aliases_is_refused_naming_the_rule(repo):
    base = _base(repo)
    readme = _blob(repo, b"---\nsdk: gradio\na: &a [x, x]\nb: [*a, *a]\n---\n")
    tip = _commit(repo, _tree(repo, ("100644", "blob", readme, "README.md")), base)
    update = RefUpdate(base, tip, "refs/heads/main")
    with pytest.raises(PushRefused, match=r"YAML aliases \(\*a\) are not allowed"):
        check_push([update], LIMITS, git_dir=str(repo), space_config=True)
    check_push([update], LIMITS, git_dir=str(repo))  # a model's README is not a space's configuration


def test_a_space_readme_breaking_the_schema_is_refused_and_a_good_one_passes(repo):
    base = _base(repo)
    bad = _commit(repo, _tree(repo, ("100644", "blob", _blob(repo, b"---\ncolorFrom: mauve\n---\n"), "README.md")),
                  base)
    with pytest.raises(PushRefused, match="README.md field 'colorFrom'"):
        check_push([RefUpdate(base, bad, "refs/heads/main")], LIMITS, git_dir=str(repo), space_config=True)
    good = _commit(repo, _tree(repo, ("100644", "blob", _blob(repo, b"---\nsdk: static\n---\n"), "README.md")), base)
    check_push([RefUpdate(base, good, "refs/heads/main")], LIMITS, git_dir=str(repo), space_config=True)


def test_a_push_that_leaves_the_readme_as_it_was_is_not_checked_again(repo):
    """Only the README a push brings is checked: one the branch already holds passed when it came (the build
    still checks it, under the rules of its day)."""
    readme = _blob(repo, b"---\na: &a [x]\nb: *a\n---\n")
    base = _commit(repo, _tree(repo, ("100644", "blob", readme, "README.md")))
    _git(repo, "update-ref", "refs/heads/main", base)
    tip = _commit(repo, _tree(repo, ("100644", "blob", readme, "README.md"),
                              ("100644", "blob", _blob(repo, b"print(1)\n"), "app.py")), base)
    check_push([RefUpdate(base, tip, "refs/heads/main")], LIMITS, git_dir=str(repo), space_config=True)
    with pytest.raises(PushRefused, match="YAML aliases"):  # a new branch brings it: checked
        check_push([RefUpdate(ZERO, tip, "refs/heads/copy")], LIMITS, git_dir=str(repo), space_config=True)
