"""A space's pages: the app (embedded), its logs, "Use via API", and its files at any revision."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from spacehub import access, accounts, lfs
from spacehub.context import Platform
from spacehub.errors import EntryNotFound, SpacehubError
from spacehub.logstream import read_logs
from spacehub.repos import TreeEntry
from spacehub.requestdeps import SESSION, get_platform
from spacehub.routetable import RedisRouteTable
from spacehub.spaceconfig import parse_front_matter
from spacehub.store.models import Space, User
from spacehub.web.deps import HTMLRoute, WebContext, current_user, web_context
from spacehub.web.gradio_info import build_snippets, fetch_info
from spacehub.web.render import Card, card_of, fragment, page, stage_look

router = APIRouter(route_class=HTMLRoute, include_in_schema=False)

TAIL_LINES = 40  # log lines an error panel shows
MAX_VIEW_BYTES = 1024 * 1024  # larger files are offered for download, not shown
_KEPT_LINES = "; its last log lines:\n"  # how a failed start appends the app's last lines to its message
_FIELD = re.compile(r"README\.md field '([A-Za-z_]+)'")


@dataclass(frozen=True)
class Problem:
    """What went wrong, in words: the stage's title, the step or README field, and the lines that show it."""

    title: str
    summary: str
    detail: str
    field: str | None
    log_kind: str | None
    log_tail: list[str]


def app_url(web: WebContext, space: Space, user: User | None) -> str:
    """The iframe's URL: a private space's carries a short-lived token the proxy swaps for a cookie."""
    base = web.settings.space_url(space.label)
    if space.private and user is not None:
        return web.access.signed_url(base, space.id, user.id)
    return base + "/"


def page_card(platform: Platform, space: Space) -> Card:
    """The card of a space's own pages: before its first build has read the README, read it here."""
    if space.card_data or not space.desired_sha:
        return card_of(space)
    try:
        readme = platform.repos.read_file(access.repo_key(space), space.desired_sha, "README.md")
        return card_of(space, parse_front_matter(readme.decode("utf-8", "replace")))
    except SpacehubError:  # no README, or front matter that is not YAML: the build will say so
        return card_of(space)


def problem_of(platform: Platform, space: Space) -> Problem | None:
    look = stage_look(space.stage)
    if look.group not in ("error", "empty"):
        return None
    message = (space.message or "").strip()
    summary, _, detail = message.partition("\n")
    field_match = _FIELD.search(message)
    log_kind = {"BUILD_ERROR": "build", "RUNTIME_ERROR": "run", "CONFIG_ERROR": "build"}.get(space.stage)
    tail: list[str] = []
    if log_kind is not None:
        tail = [line.text for line in read_logs(platform.redis, space.id, "build" if log_kind == "build" else "run",
                                                tail=TAIL_LINES)]
        said, kept, printed = message.partition(_KEPT_LINES)
        if log_kind == "run" and not tail and kept:
            # It died before the supervisor copied its output, but the start kept the app's own last lines in the
            # message (readiness.py): those are what it printed, shown once, as such.
            tail, summary, detail = printed.splitlines()[-TAIL_LINES:], said.rstrip("; "), ""
        elif log_kind == "run" and not tail:  # nothing of the app's own: the start log, labelled as what it is
            log_kind = "build"
            tail = [line.text for line in read_logs(platform.redis, space.id, "build", tail=TAIL_LINES)]
    titles = {"BUILD_ERROR": "The build failed", "CONFIG_ERROR": "The space's configuration has an error",
              "RUNTIME_ERROR": "The app stopped with an error", "NO_APP_FILE": "No application file yet"}
    return Problem(title=titles.get(space.stage, look.label), summary=summary.rstrip(":"), detail=detail.strip(),
                   field=field_match.group(1) if field_match else None, log_kind=log_kind, log_tail=tail)


def _space_context(request: Request, platform: Platform, session: Session, web: WebContext, user: User | None,
                   owner: str, name: str) -> dict[str, object]:
    space = access.get_visible(session, user, owner, name)
    return {
        "space": space, "card": page_card(platform, space), "look": stage_look(space.stage), "user": user,
        "can_write": accounts.can_write(session, user, space.owner),
        "space_url": web.settings.space_url(space.label), "app_url": app_url(web, space, user),
        "base": f"/spaces/{space.owner}/{space.name}", "problem": problem_of(platform, space),
    }


def _space_tab(tab: str):  # type: ignore[no-untyped-def]
    def handler(request: Request, owner: str, name: str, platform: Platform = Depends(get_platform),
                session: Session = SESSION, web: WebContext = Depends(web_context),
                user: User | None = Depends(current_user)) -> Response:
        context = _space_context(request, platform, session, web, user, owner, name)
        return page(request, "space.html", tab=tab, **context)  # type: ignore[arg-type]

    return handler


router.add_api_route("/spaces/{owner}/{name}", _space_tab("app"), methods=["GET"])
router.add_api_route("/spaces/{owner}/{name}/logs", _space_tab("logs"), methods=["GET"])
router.add_api_route("/spaces/{owner}/{name}/api", _space_tab("api"), methods=["GET"])


@router.get("/spaces/{owner}/{name}/open")
def open_app(owner: str, name: str, session: Session = SESSION, web: WebContext = Depends(web_context),
             user: User | None = Depends(current_user)) -> Response:
    """The app on its own host, in a tab of its own: a fresh signed URL when the space is private."""
    space = access.get_visible(session, user, owner, name)
    return RedirectResponse(app_url(web, space, user), status_code=303, headers={"Cache-Control": "no-store"})


@router.get("/spaces/{owner}/{name}/status")
def status_fragment(request: Request, owner: str, name: str, platform: Platform = Depends(get_platform),
                    session: Session = SESSION, web: WebContext = Depends(web_context),
                    user: User | None = Depends(current_user)) -> Response:
    """The panel above (or instead of) the app, re-fetched by the page when the stage changes."""
    context = _space_context(request, platform, session, web, user, owner, name)
    return fragment("_status.html", session=request.state.web_session, **context)


@router.get("/spaces/{owner}/{name}/api-snippets")
def api_snippets(request: Request, owner: str, name: str, platform: Platform = Depends(get_platform),
                 session: Session = SESSION, user: User | None = Depends(current_user)) -> Response:
    space = access.get_visible(session, user, owner, name)
    info = fetch_info(platform.settings, space, RedisRouteTable(platform.redis)) if space.sdk == "gradio" else None
    snippets = build_snippets(platform.settings, space, info)
    return fragment("_api.html", space=space, snippets=snippets, settings=platform.settings)


# Files

def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = [p for p in path.split("/") if p]
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def _files_context(platform: Platform, space: Space, revision: str) -> dict[str, object]:
    key = access.repo_key(space)
    sha = platform.repos.resolve(key, revision)
    commits = platform.repos.log(key, sha, limit=1)
    return {"revision": revision, "sha": sha, "head_commit": commits[0] if commits else None,
            "rev_path": quote(revision, safe="")}


@router.get("/spaces/{owner}/{name}/tree/{revision}")
@router.get("/spaces/{owner}/{name}/tree/{revision}/{path:path}")
def tree(request: Request, owner: str, name: str, revision: str, path: str = "",
         platform: Platform = Depends(get_platform), session: Session = SESSION,
         web: WebContext = Depends(web_context), user: User | None = Depends(current_user)) -> Response:
    context = _space_context(request, platform, session, web, user, owner, name)
    space: Space = context["space"]  # type: ignore[assignment]
    path = path.strip("/")
    if not space.desired_sha:
        return page(request, "space_files.html", tab="files", entries=[], path="", crumbs=[], empty=True,
                    revision=revision, sha=None, head_commit=None, rev_path=revision, **context)  # type: ignore[arg-type]
    files = _files_context(platform, space, revision)
    entries: list[TreeEntry] = platform.repos.list_tree(access.repo_key(space), str(files["sha"]), path,
                                                        recursive=False)
    entries.sort(key=lambda e: (e.kind != "directory", e.path.lower()))
    found = lfs.pointers(platform, access.repo_key(space),
                         [e.blob_id for e in entries if e.kind == "file" and e.size <= lfs.MAX_POINTER_BYTES])
    lfs_sizes = {e.path: found[e.blob_id].size for e in entries if e.blob_id in found}
    return page(request, "space_files.html", tab="files", entries=entries, path=path, crumbs=_crumbs(path),
                empty=False, lfs_sizes=lfs_sizes, **files, **context)  # type: ignore[arg-type]


@router.get("/spaces/{owner}/{name}/blob/{revision}/{path:path}")
def blob(request: Request, owner: str, name: str, revision: str, path: str,
         platform: Platform = Depends(get_platform), session: Session = SESSION,
         web: WebContext = Depends(web_context), user: User | None = Depends(current_user)) -> Response:
    context = _space_context(request, platform, session, web, user, owner, name)
    space: Space = context["space"]  # type: ignore[assignment]
    if not space.desired_sha:
        raise EntryNotFound(f"{space.repo_id} has no files yet")
    files = _files_context(platform, space, revision)
    key = access.repo_key(space)
    size = platform.repos.file_size(key, str(files["sha"]), path)
    text = None
    pointer = lfs.parse_pointer(platform.repos.read_file(key, str(files["sha"]), path)) \
        if size <= lfs.MAX_POINTER_BYTES else None
    if pointer is not None:  # an LFS file: its size, and a download, never the pointer's text
        size = pointer.size
    elif size <= MAX_VIEW_BYTES:
        data = platform.repos.read_file(key, str(files["sha"]), path)
        try:
            text = data.decode("utf-8") if b"\0" not in data else None
        except UnicodeDecodeError:
            text = None
    lines = text.splitlines() if text is not None else []
    return page(request, "space_blob.html", tab="files", path=path, crumbs=_crumbs(path), size=size,
                lines=lines, is_text=text is not None, **files, **context)  # type: ignore[arg-type]


@router.get("/spaces/{owner}/{name}/raw/{revision}/{path:path}")
def raw(owner: str, name: str, revision: str, path: str, platform: Platform = Depends(get_platform),
        session: Session = SESSION, user: User | None = Depends(current_user)) -> Response:
    """A file as a download: never rendered on the platform's origin, whatever it contains."""
    space = access.get_visible(session, user, owner, name)
    data = platform.repos.read_file(access.repo_key(space), revision, path)
    filename = quote(path.rsplit("/", 1)[-1])
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{filename}", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "sandbox", "Cache-Control": "no-store"}
    pointer = lfs.parse_pointer(data)
    if pointer is not None and platform.objects.size(pointer.oid) == pointer.size:  # the LFS file's bytes
        return StreamingResponse(platform.objects.read(pointer.oid), media_type="application/octet-stream",
                                 headers={**headers, "Content-Length": str(pointer.size)})
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get("/spaces/{owner}/{name}/commits/{revision}")
def commits(request: Request, owner: str, name: str, revision: str,
            platform: Platform = Depends(get_platform), session: Session = SESSION,
            web: WebContext = Depends(web_context), user: User | None = Depends(current_user)) -> Response:
    context = _space_context(request, platform, session, web, user, owner, name)
    space: Space = context["space"]  # type: ignore[assignment]
    history = platform.repos.log(access.repo_key(space), revision, limit=200) if space.desired_sha else []
    return page(request, "space_commits.html", tab="files", commits=history, revision=revision,
                rev_path=quote(revision, safe=""), **context)  # type: ignore[arg-type]
