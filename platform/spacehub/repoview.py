"""Reading a repository (space or model) the way the Hub API presents it: revisions, files, card data, ignores."""

from __future__ import annotations

from typing import Any

import pathspec

from spacehub.access import repo_key
from spacehub.context import Platform
from spacehub.errors import EntryNotFound, RevisionNotFound, SpacehubError
from spacehub.repos import DEFAULT_BRANCH, TreeEntry
from spacehub.spaceconfig import parse_front_matter
from spacehub.store.models import Space


def is_empty(platform: Platform, space: Space) -> bool:
    """No commit yet: the Hub always has one, spacehub's repos start empty."""
    return not platform.repos.refs(repo_key(space))["branches"]


def resolve(platform: Platform, space: Space, revision: str) -> str | None:
    """The commit a revision names; None for the default branch of an empty repo; RevisionNotFound otherwise."""
    try:
        return platform.repos.resolve(repo_key(space), revision)
    except RevisionNotFound:
        if revision == DEFAULT_BRANCH and is_empty(platform, space):
            return None
        raise RevisionNotFound(f"Invalid rev id: {revision} (no such branch, tag or commit in "
                               f"{space.repo_type} '{space.repo_id}')") from None


def files(platform: Platform, space: Space, sha: str | None) -> list[TreeEntry]:
    if sha is None:
        return []
    return [entry for entry in platform.repos.list_tree(repo_key(space), sha) if entry.kind == "file"]


def read_text(platform: Platform, space: Space, sha: str | None, path: str) -> str | None:
    if sha is None:
        return None
    try:
        return platform.repos.read_file(repo_key(space), sha, path).decode("utf-8", "replace")
    except EntryNotFound:
        return None


def card_data(platform: Platform, space: Space, sha: str | None) -> dict[str, Any]:
    """README.md's front matter at `sha` ({} when absent or unreadable: a card never breaks an info call)."""
    readme = read_text(platform, space, sha, "README.md")
    if not readme:
        return {}
    try:
        return parse_front_matter(readme)
    except SpacehubError:
        return {}


def ignore_spec(gitignore: str | None) -> pathspec.PathSpec | None:
    """The top-level .gitignore as the Hub applies it at preupload (files it names are left out)."""
    if not gitignore:
        return None
    return pathspec.PathSpec.from_lines("gitwildmatch", gitignore.splitlines())


def is_ignored(spec: pathspec.PathSpec | None, path: str) -> bool:
    return spec is not None and path != ".gitignore" and spec.match_file(path)
