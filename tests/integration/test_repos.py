"""RepoStore against the real git CLI: deterministic trees, overlays, reads, conflicts and concurrent writers."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from spacehub.errors import (
    Conflict,
    EntryNotFound,
    InvalidInput,
    RepoNotFound,
    RevisionNotFound,
    UnsafeUpload,
)
from spacehub.repos import RepoStore, TreeEntry

KEY = "alice/demo"


@pytest.fixture
def store(tmp_path: Path) -> RepoStore:
    repos = RepoStore(tmp_path / "repos")
    repos.create(KEY)
    return repos


def folder_with(root: Path, files: dict[str, bytes], name: str = "src") -> Path:
    folder = root / name
    for path, data in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    folder.mkdir(exist_ok=True)
    return folder


def files_at(store: RepoStore, revision: str = "main") -> dict[str, bytes]:
    return {entry.path: store.read_file(KEY, revision, entry.path)
            for entry in store.list_tree(KEY, revision) if entry.kind == "file"}


def git(repo: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["git", f"--git-dir={repo}", *args], input=stdin, capture_output=True, check=True,
                          env={**os.environ, **(env or {})})
    return done.stdout.decode().strip()


TREE = {"app.py": b"import gradio\n", "README.md": b"---\nsdk: gradio\n---\n", "src/util.py": b"x = 1\n"}

# Repositories -----------------------------------------------------------------------------------------------------


def test_create_is_idempotent_and_makes_a_bare_repo_on_main(store: RepoStore, tmp_path: Path) -> None:
    store.create(KEY)
    repo = tmp_path / "repos" / "alice" / "demo.git"
    assert store.exists(KEY)
    assert git(repo, "rev-parse", "--is-bare-repository") == "true"
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert not (repo / "hooks").exists(), "no sample hooks: nothing in a repo should ever execute"
    assert store.head(KEY) is None


def test_models_and_datasets_live_under_their_kind(tmp_path: Path) -> None:
    store = RepoStore(tmp_path / "repos")
    store.create("models/alice/demo")
    assert (tmp_path / "repos" / "models" / "alice" / "demo.git" / "HEAD").is_file()
    assert not store.exists(KEY)


@pytest.mark.parametrize("key", ["alice", "a/b/c", "../x", "alice/..", "alice/../bob", "/alice/demo", "a//b",
                                 "alice/.hidden", "models/../x/y"])
def test_keys_that_could_leave_the_root_are_refused(store: RepoStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        store.create(key)


def test_delete_and_move(store: RepoStore) -> None:
    store.commit_tree(KEY, folder_with(store.root.parent, TREE), "first", "alice")
    store.move(KEY, "bob/renamed")
    assert not store.exists(KEY)
    assert store.read_file("bob/renamed", "main", "app.py") == TREE["app.py"]
    store.create("carol/taken")
    with pytest.raises(Conflict):
        store.move("bob/renamed", "carol/taken")
    store.delete("bob/renamed")
    store.delete("bob/renamed")  # a retried delete is fine
    assert not store.exists("bob/renamed")
    with pytest.raises(RepoNotFound):
        store.head("bob/renamed")


def test_missing_repo_raises_repo_not_found(store: RepoStore, tmp_path: Path) -> None:
    for call in (lambda: store.resolve("nobody/here", "main"), lambda: store.log("nobody/here"),
                 lambda: store.commit_tree("nobody/here", tmp_path, "m", "a"),
                 lambda: store.commit_changes("nobody/here", {"a": b""}, [], "m", "a"),
                 lambda: store.move("nobody/here", "x/y")):
        with pytest.raises(RepoNotFound):
            call()


# commit_tree ------------------------------------------------------------------------------------------------------


def test_same_files_twice_is_unchanged_with_the_same_sha(store: RepoStore, tmp_path: Path) -> None:
    first = store.commit_tree(KEY, folder_with(tmp_path, TREE, "one"), "first", "alice")
    again = store.commit_tree(KEY, folder_with(tmp_path, TREE, "two"), "again", "alice")
    assert first.changed and not again.changed
    assert again.sha == first.sha == store.head(KEY)
    assert len(store.log(KEY)) == 1


def test_a_changed_file_makes_a_new_commit(store: RepoStore, tmp_path: Path) -> None:
    first = store.commit_tree(KEY, folder_with(tmp_path, TREE, "one"), "first", "alice")
    second = store.commit_tree(KEY, folder_with(tmp_path, {**TREE, "app.py": b"changed\n"}, "two"), "edit",
                               "Alice Liddell <alice@example.com>")
    assert second.changed and second.sha != first.sha
    assert store.read_file(KEY, "main", "app.py") == b"changed\n"
    assert store.read_file(KEY, first.sha, "app.py") == TREE["app.py"]
    newest, oldest = store.log(KEY)
    assert (newest.sha, newest.message, newest.author, newest.parents) == (second.sha, "edit", "Alice Liddell",
                                                                          (first.sha,))
    assert (oldest.sha, oldest.parents, oldest.author) == (first.sha, (), "alice")
    assert newest.timestamp >= oldest.timestamp > 1_600_000_000


def test_the_same_files_hash_to_the_same_tree_in_any_repo(store: RepoStore, tmp_path: Path) -> None:
    store.create("bob/other")
    src = folder_with(tmp_path, TREE)
    store.commit_tree(KEY, src, "m", "alice")
    store.commit_tree("bob/other", src, "m", "bob")
    repos = tmp_path / "repos"
    assert (git(repos / "alice" / "demo.git", "rev-parse", "main^{tree}")
            == git(repos / "bob" / "other.git", "rev-parse", "main^{tree}"))


def test_the_whole_tree_is_replaced_and_the_committer_is_fixed(store: RepoStore, tmp_path: Path) -> None:
    store.commit_tree(KEY, folder_with(tmp_path, TREE, "one"), "first", "alice")
    store.commit_tree(KEY, folder_with(tmp_path, {"only.txt": b"1"}, "two"), "second", "alice")
    assert files_at(store) == {"only.txt": b"1"}
    committer = git(tmp_path / "repos" / "alice" / "demo.git", "log", "-1", "--format=%cn <%ce>")
    assert committer == "spacehub <spacehub@localhost>"


def test_uploaded_gitattributes_cannot_rewrite_stored_bytes(store: RepoStore, tmp_path: Path) -> None:
    files = {".gitattributes": b"* text eol=lf\n*.txt filter=evil\n", "notes.txt": b"line one\r\nline two\r\n"}
    store.commit_tree(KEY, folder_with(tmp_path, files), "m", "alice")
    assert files_at(store) == files


def test_commit_tree_refuses_links_and_git_folders(store: RepoStore, tmp_path: Path) -> None:
    linked = folder_with(tmp_path, {"app.py": b"x"}, "linked")
    (linked / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeUpload, match="'passwd': symbolic links"):
        store.commit_tree(KEY, linked, "m", "alice")
    with pytest.raises(UnsafeUpload, match=".git folders"):
        store.commit_tree(KEY, folder_with(tmp_path, {".git/config": b"[core]"}, "gitdir"), "m", "alice")
    assert store.head(KEY) is None


def test_commit_tree_with_a_stale_parent_conflicts(store: RepoStore, tmp_path: Path) -> None:
    first = store.commit_tree(KEY, folder_with(tmp_path, TREE, "one"), "first", "alice")
    second = store.commit_tree(KEY, folder_with(tmp_path, {"a": b"1"}, "two"), "second", "alice",
                               parent=first.sha)
    with pytest.raises(Conflict):
        store.commit_tree(KEY, folder_with(tmp_path, {"b": b"2"}, "three"), "third", "alice", parent=first.sha)
    assert store.head(KEY) == second.sha


# commit_changes ---------------------------------------------------------------------------------------------------


def test_commit_changes_adds_deletes_and_deletes_folders(store: RepoStore, tmp_path: Path) -> None:
    files = {**TREE, "data/a.csv": b"1", "data/sub/b.csv": b"2", "datasets.txt": b"keep me"}
    base = store.commit_tree(KEY, folder_with(tmp_path, files), "base", "alice")
    on_disk = tmp_path / "weights.bin"
    on_disk.write_bytes(b"\x00\x01")
    result = store.commit_changes(KEY, {"new/file.txt": b"new", "app.py": b"v2\n", "weights.bin": on_disk},
                                  ["README.md", "data/"], "update", "alice", parent_commit=base.sha)
    assert result.changed
    assert files_at(store) == {"app.py": b"v2\n", "src/util.py": b"x = 1\n", "datasets.txt": b"keep me",
                               "new/file.txt": b"new", "weights.bin": b"\x00\x01"}
    assert store.log(KEY)[0].parents == (base.sha,)


def test_commit_changes_on_an_empty_repo_and_a_no_op(store: RepoStore) -> None:
    first = store.commit_changes(KEY, {"a.txt": b"a"}, [], "first", "alice")
    assert first.changed and store.log(KEY)[0].parents == ()
    same = store.commit_changes(KEY, {"a.txt": b"a"}, [], "same", "alice")
    assert same == type(same)(first.sha, False)


def test_commit_changes_with_a_stale_parent_conflicts(store: RepoStore) -> None:
    first = store.commit_changes(KEY, {"a.txt": b"a"}, [], "first", "alice")
    store.commit_changes(KEY, {"b.txt": b"b"}, [], "second", "alice", parent_commit=first.sha)
    with pytest.raises(Conflict) as caught:
        store.commit_changes(KEY, {"c.txt": b"c"}, [], "third", "alice", parent_commit=first.sha)
    assert caught.value.status == 409
    assert "c.txt" not in files_at(store)


def test_commit_changes_refuses_bad_paths_and_missing_deletions(store: RepoStore) -> None:
    store.commit_changes(KEY, {"a.txt": b"a"}, [], "first", "alice")
    with pytest.raises(UnsafeUpload, match="escapes"):
        store.commit_changes(KEY, {"../evil": b"x"}, [], "m", "alice")
    with pytest.raises(UnsafeUpload, match=".git folders"):
        store.commit_changes(KEY, {".git/hooks/post-update": b"x"}, [], "m", "alice")
    with pytest.raises(EntryNotFound):
        store.commit_changes(KEY, {"b.txt": b"b"}, ["nope.txt"], "m", "alice")
    with pytest.raises(InvalidInput, match="is a file"):
        store.commit_changes(KEY, {"a.txt/inner": b"x"}, [], "m", "alice")
    assert files_at(store) == {"a.txt": b"a"}, "a refused commit changes nothing"


def test_concurrent_commits_from_threads_lose_nothing(store: RepoStore) -> None:
    writers, commits_each = 6, 5
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for number in range(commits_each):
                store.commit_changes(KEY, {f"w{writer}/{number}.txt": f"{writer}-{number}".encode()}, [],
                                     f"writer {writer} commit {number}", f"writer{writer}")
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(files_at(store)) == writers * commits_each
    history = store.log(KEY)
    assert len(history) == writers * commits_each
    assert all(len(commit.parents) == (1 if commit is not history[-1] else 0) for commit in history)
    assert subprocess.run(["git", f"--git-dir={store.root / 'alice' / 'demo.git'}", "fsck", "--strict"],
                          capture_output=True).returncode == 0


# Reading ----------------------------------------------------------------------------------------------------------


def test_list_tree(store: RepoStore, tmp_path: Path) -> None:
    store.commit_tree(KEY, folder_with(tmp_path, {**TREE, "src/deep/x.bin": b"12345"}), "m", "alice")
    everything = store.list_tree(KEY, "main")
    assert [(e.path, e.kind, e.size) for e in everything] == [
        ("README.md", "file", len(TREE["README.md"])), ("app.py", "file", len(TREE["app.py"])),
        ("src", "directory", 0), ("src/deep", "directory", 0), ("src/deep/x.bin", "file", 5),
        ("src/util.py", "file", 6)]
    assert all(len(entry.blob_id) == 40 for entry in everything)
    assert [e.path for e in store.list_tree(KEY, "main", recursive=False)] == ["README.md", "app.py", "src"]
    assert [e.path for e in store.list_tree(KEY, "main", "src", recursive=False)] == ["src/deep", "src/util.py"]
    assert store.list_tree(KEY, "main", "/src/deep/") == [
        TreeEntry("src/deep/x.bin", 5, git(tmp_path / "repos" / "alice" / "demo.git", "rev-parse",
                                           "main:src/deep/x.bin"), "file")]
    with pytest.raises(EntryNotFound):
        store.list_tree(KEY, "main", "nope")
    with pytest.raises(EntryNotFound):
        store.list_tree(KEY, "main", "app.py")  # a file is not a folder


def test_read_file_and_size(store: RepoStore, tmp_path: Path) -> None:
    store.commit_tree(KEY, folder_with(tmp_path, TREE), "m", "alice")
    assert store.read_file(KEY, "main", "src/util.py") == b"x = 1\n"
    assert store.file_size(KEY, "main", "/src/util.py") == 6
    for path in ("missing.py", "src", "", "src/util.py/x"):
        with pytest.raises(EntryNotFound):
            store.read_file(KEY, "main", path)
    with pytest.raises(InvalidInput):
        store.read_file(KEY, "main", "../../etc/passwd")
    with pytest.raises(RevisionNotFound):
        store.read_file(KEY, "nope", "app.py")


def test_resolve_branches_tags_and_shas(store: RepoStore, tmp_path: Path) -> None:
    sha = store.commit_tree(KEY, folder_with(tmp_path, TREE), "m", "alice").sha
    repo = tmp_path / "repos" / "alice" / "demo.git"
    git(repo, "tag", "-a", "v1", "-m", "release", sha,
        env={"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})
    assert store.resolve(KEY, "main") == sha
    assert store.resolve(KEY, "refs/heads/main") == sha
    assert store.resolve(KEY, "v1") == sha  # an annotated tag peels to its commit
    assert store.resolve(KEY, sha) == sha
    assert store.resolve(KEY, sha[:8]) == sha
    assert store.refs(KEY) == {"branches": {"main": sha}, "tags": {"v1": sha}}
    tree = git(repo, "rev-parse", "main^{tree}")
    for revision in ("nope", "0" * 40, tree, "main~1", "main^{tree}", "main:app.py", "--all", "HEAD@{0}", ""):
        with pytest.raises(RevisionNotFound):
            store.resolve(KEY, revision)


def test_an_empty_repo_has_no_revisions(store: RepoStore) -> None:
    with pytest.raises(RevisionNotFound):
        store.resolve(KEY, "main")
    with pytest.raises(RevisionNotFound):
        store.log(KEY)
    assert store.refs(KEY) == {"branches": {}, "tags": {}}


def test_log_limit_and_multiline_messages(store: RepoStore) -> None:
    for number in range(3):
        store.commit_changes(KEY, {"n.txt": str(number).encode()}, [], f"title {number}\n\nbody {number}",
                             "alice")
    history = store.log(KEY, limit=2)
    assert [commit.message for commit in history] == ["title 2\n\nbody 2", "title 1\n\nbody 1"]


# checkout ---------------------------------------------------------------------------------------------------------


def test_checkout_materialises_the_tree(store: RepoStore, tmp_path: Path) -> None:
    src = folder_with(tmp_path, {**TREE, "run.sh": b"#!/bin/sh\n", ".gitattributes": b"* export-ignore\n"})
    (src / "run.sh").chmod(0o755)
    first = store.commit_tree(KEY, src, "m", "alice").sha
    store.commit_changes(KEY, {"later.txt": b"later"}, [], "m2", "alice")
    dest = tmp_path / "work" / "checkout"
    store.checkout(KEY, first, dest)
    on_disk = {path.relative_to(dest).as_posix(): path.read_bytes()
               for path in dest.rglob("*") if path.is_file()}
    assert on_disk == {**TREE, "run.sh": b"#!/bin/sh\n", ".gitattributes": b"* export-ignore\n"}
    assert (dest / "run.sh").stat().st_mode & 0o111
    assert not (dest / "app.py").stat().st_mode & 0o111


def _commit_raw(repo: Path, entries: list[tuple[str, str, bytes]]) -> str:
    """A commit as a `git push` could deliver it (symlinks included), made with plain git."""
    index = repo / "push-index"
    env = {"GIT_INDEX_FILE": str(index), "GIT_AUTHOR_NAME": "p", "GIT_AUTHOR_EMAIL": "p@p",
           "GIT_COMMITTER_NAME": "p", "GIT_COMMITTER_EMAIL": "p@p"}
    for mode, path, data in entries:
        oid = git(repo, "hash-object", "-w", "--stdin", stdin=data)
        git(repo, "update-index", "--add", "--cacheinfo", f"{mode},{oid},{path}", env=env)
    tree = git(repo, "write-tree", env=env)
    index.unlink()
    sha = git(repo, "commit-tree", tree, "-m", "pushed", env=env)
    git(repo, "update-ref", "refs/heads/main", sha)
    return sha


def test_checkout_keeps_links_that_stay_inside(store: RepoStore, tmp_path: Path) -> None:
    sha = _commit_raw(tmp_path / "repos" / "alice" / "demo.git",
                      [("100644", "data/real.txt", b"real"), ("120000", "alias.txt", b"data/real.txt")])
    dest = tmp_path / "checkout"
    store.checkout(KEY, sha, dest)
    assert (dest / "alias.txt").is_symlink() and (dest / "alias.txt").read_bytes() == b"real"
    assert store.read_file(KEY, sha, "alias.txt") == b"data/real.txt", "reads give the link, never its target"


@pytest.mark.parametrize("links", [
    [("120000", "escape", b"../../../../etc/passwd")],
    [("120000", "absolute", b"/etc/passwd")],
    [("120000", "here", b"."), ("120000", "up", b"here/../outside")],  # each link alone looks inside
])
def test_checkout_refuses_links_that_leave(store: RepoStore, tmp_path: Path,
                                           links: list[tuple[str, str, bytes]]) -> None:
    sha = _commit_raw(tmp_path / "repos" / "alice" / "demo.git", [("100644", "app.py", b"x"), *links])
    with pytest.raises(UnsafeUpload, match="symbolic link"):
        store.checkout(KEY, sha, tmp_path / "checkout")
