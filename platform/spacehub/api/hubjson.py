"""Repos, files and commits in the Hub's JSON shapes (ModelInfo/SpaceInfo, RepoFile/RepoFolder, GitCommitInfo).

Never a `xetHash` key: it would send the client off to Xet, which spacehub does not speak. LFS files carry the
Hub's `lfs` block (tree: `oid`; siblings: `sha256`) and their real size.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from spacehub.api.serialize import hub_time, space_json
from spacehub.lfs import Pointer
from spacehub.repos import CommitInfo, TreeEntry
from spacehub.settings import Settings
from spacehub.store.models import Space

# Properties `?expand=` may ask for; `id` always comes along.
EXPANDABLE = frozenset({
    "author", "cardData", "createdAt", "disabled", "gated", "lastModified", "likes", "private", "runtime", "sdk",
    "sha", "siblings", "subdomain", "host", "tags", "trendingScore", "usedStorage", "downloads", "library_name",
    "pipeline_tag", "modelId", "models", "datasets", "safetensors", "config",
})


def repo_json(settings: Settings, space: Space, *, sha: str | None, siblings: list[dict[str, Any]] | None,
              card: dict[str, Any] | None, expand: list[str] | None = None,
              used_storage: int | None = None) -> dict[str, Any]:
    """SpaceInfo or ModelInfo; `sha` is the commit of the revision asked for (None: an empty repo)."""
    data = space_json(settings, space, siblings)
    data["sha"] = sha
    if card is not None:
        data["cardData"] = card
    meta = space.meta or {}
    if space.repo_type == "model":
        data.update({"modelId": space.repo_id, "downloads": 0, "library_name": meta.get("library_name"),
                     "pipeline_tag": meta.get("pipeline_tag"), "tags": list(meta.get("tags") or [])})
        for key in ("safetensors", "config"):
            if meta.get(key):
                data[key] = meta[key]
    elif space.repo_type == "dataset":
        data.update({"downloads": 0, "tags": list(meta.get("tags") or [])})
    else:
        data.update({"models": [], "datasets": []})
    if used_storage is not None:
        data["usedStorage"] = used_storage
    if expand:
        wanted = set(expand) & EXPANDABLE
        data = {key: value for key, value in data.items() if key == "id" or key in wanted}
    return data


def sibling_json(entry: TreeEntry, blobs: bool, pointer: Pointer | None = None) -> dict[str, Any]:
    if not blobs:
        return {"rfilename": entry.path}
    data: dict[str, Any] = {"rfilename": entry.path, "size": entry.size, "blobId": entry.blob_id}
    if pointer is not None:
        data["size"] = pointer.size
        data["lfs"] = {"sha256": pointer.oid, "size": pointer.size, "pointerSize": pointer.pointer_size}
    return data


def tree_json(entry: TreeEntry, last_commit: CommitInfo | None = None,
              pointer: Pointer | None = None) -> dict[str, Any]:
    if entry.kind == "directory":
        data: dict[str, Any] = {"type": "directory", "oid": entry.blob_id, "size": 0, "path": entry.path}
    else:
        data = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": entry.path}
        if pointer is not None:
            data["size"] = pointer.size
            data["lfs"] = {"oid": pointer.oid, "size": pointer.size, "pointerSize": pointer.pointer_size}
    if last_commit is not None:
        data["lastCommit"] = {"id": last_commit.sha, "title": _title(last_commit.message),
                              "date": commit_time(last_commit)}
    return data


def commit_json(commit: CommitInfo, formatted: bool = False) -> dict[str, Any]:
    title, message = _title(commit.message), _body(commit.message)
    data: dict[str, Any] = {"id": commit.sha, "authors": [{"user": commit.author, "avatar": None}],
                            "date": commit_time(commit), "title": title, "message": message}
    if formatted:
        data["formatted"] = {"title": html.escape(title), "message": html.escape(message)}
    return data


def commit_time(commit: CommitInfo) -> str | None:
    return hub_time(datetime.fromtimestamp(commit.timestamp, UTC).replace(tzinfo=None))


def _title(message: str) -> str:
    return message.split("\n", 1)[0]


def _body(message: str) -> str:
    return message.split("\n", 1)[1].strip("\n") if "\n" in message else ""
