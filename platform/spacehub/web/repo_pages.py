"""A model's or dataset's page: its card (README rendered, raw HTML never), its files with LFS sizes and download
links, and its history. `/{owner}/{name}` (models, as on the Hub) and `/datasets/{owner}/{name}`."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markdown_it import MarkdownIt
from sqlalchemy.orm import Session
from starlette.convertors import Convertor, register_url_convertor

from spacehub import access, lfs, repoview
from spacehub.context import Platform
from spacehub.repos import DEFAULT_BRANCH
from spacehub.requestdeps import SESSION, get_platform
from spacehub.store.models import User
from spacehub.web.deps import HTMLRoute, current_user
from spacehub.web.render import page

router = APIRouter(route_class=HTMLRoute, include_in_schema=False)

MAX_README_BYTES = 512 * 1024
HISTORY = 30
# First path segments that are the platform's own (API, assets, pages): never a model's owner.
_RESERVED = ("api", "static", "spaces", "datasets", "models", "settings", "organizations", "login", "logout",
             "join", "new-space", "tokens", "docs", "health", "metrics")


class ModelOwnerConvertor(Convertor[str]):
    regex = "(?!(?:" + "|".join(_RESERVED) + ")(?:/|$))[A-Za-z0-9][A-Za-z0-9._-]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("modelowner", ModelOwnerConvertor())
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False})


def _body_of(readme: str) -> str:
    """The README without its YAML front matter."""
    if readme.startswith("---\n"):
        end = readme.find("\n---", 3)
        if end >= 0:
            newline = readme.find("\n", end + 4)
            return readme[newline + 1:] if newline >= 0 else ""
    return readme


def _repo_page(request: Request, platform: Platform, session: Session, user: User | None, repo_type: str,
               owner: str, name: str) -> Response:
    repo = access.get_visible(session, user, owner, name, repo_type)
    sha = repoview.resolve(platform, repo, DEFAULT_BRANCH)
    entries = repoview.files(platform, repo, sha)
    key = access.repo_key(repo)
    pointers = lfs.pointers(platform, key, [e.blob_id for e in entries if e.size <= lfs.MAX_POINTER_BYTES])
    prefix = "datasets/" if repo_type == "dataset" else ""
    files = [{"path": entry.path, "size": pointers[entry.blob_id].size if entry.blob_id in pointers else entry.size,
              "lfs": entry.blob_id in pointers,
              "href": f"/{prefix}{repo.repo_id}/resolve/{sha}/{quote(entry.path)}"} for entry in entries]
    readme = repoview.read_text(platform, repo, sha, "README.md") if any(
        e.path == "README.md" and e.size <= MAX_README_BYTES for e in entries) else None
    card_html = _markdown.render(_body_of(readme)) if readme else ""
    history = platform.repos.log(key, sha, limit=HISTORY) if sha else []
    return page(request, "repo.html", user=user, repo=repo, kind=repo_type, files=files, card_html=card_html,
                history=history, meta=repo.meta or {}, sha=sha)


@router.get("/datasets/{owner}/{name}")
def dataset_page(request: Request, owner: str, name: str, platform: Platform = Depends(get_platform),
                 session: Session = SESSION, user: User | None = Depends(current_user)) -> Response:
    return _repo_page(request, platform, session, user, "dataset", owner, name)


@router.get("/{owner:modelowner}/{name}")
def model_page(request: Request, owner: str, name: str, platform: Platform = Depends(get_platform),
               session: Session = SESSION, user: User | None = Depends(current_user)) -> Response:
    return _repo_page(request, platform, session, user, "model", owner, name)
