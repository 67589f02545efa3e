"""How the Hub's URLs name things: repo kinds, revisions and file paths in the raw path, absolute URLs.

The client percent-encodes a revision as one segment (`refs%2Fpr%2F1`) and a tree path likewise
(`sub%20dir%2Fx`), while `/resolve/` file names keep their slashes. The decoded path cannot tell those apart,
so these routes split the raw path (`scope["raw_path"]`) and decode each part themselves.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from fastapi import Request
from starlette.convertors import Convertor, register_url_convertor

from spacehub.errors import InvalidInput, NotFound
from spacehub.repos import DEFAULT_BRANCH
from spacehub.settings import Settings

KINDS = {"spaces": "space", "models": "model", "datasets": "dataset"}
URL_PREFIXES = {"space": "spaces/", "model": "", "dataset": "datasets/"}


class RepoKindConvertor(Convertor[str]):
    """`{kind:repokind}` matches only the Hub's repo kinds, so these routes never shadow other `/api/...` paths."""

    regex = "spaces|models|datasets"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("repokind", RepoKindConvertor())


def repo_type_of(kind: str) -> str:
    """`spaces` -> `space`, `models` -> `model`, `datasets` -> `dataset`."""
    if kind in KINDS:
        return KINDS[kind]
    raise NotFound(f"no such API: /api/{kind}/...")


def raw_segments(request: Request) -> list[str]:
    """The request path's segments as sent (still percent-encoded)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    return raw.decode("latin-1").split("?", 1)[0].split("/")[1:]


def _after(request: Request, marker: str, at: int) -> list[str]:
    """The raw segments after the `at`-th one, which the route guarantees is `marker` (a repo may be named so)."""
    segments = raw_segments(request)
    if len(segments) <= at or unquote(segments[at]) != marker:
        raise NotFound("unexpected path")
    return segments[at + 1:]


def revision_and_path(request: Request, marker: str, at: int) -> tuple[str, str]:
    """After the segment `marker` (`tree`, `resolve`, ...): the revision (one segment) and the rest, decoded."""
    rest = _after(request, marker, at)
    if not rest or not rest[0]:
        return DEFAULT_BRANCH, ""
    revision = unquote(rest[0])
    path = unquote("/".join(rest[1:]))
    if not revision.strip():
        raise InvalidInput("empty revision")
    return revision, path


def revision_after(request: Request, marker: str, at: int) -> str:
    """The whole rest after `marker` as one revision (`commit/refs%2Fpr%2F1`, also with raw slashes)."""
    rest = _after(request, marker, at)
    revision = unquote("/".join(rest)).strip("/")
    return revision or DEFAULT_BRANCH


def base_url(request: Request, settings: Settings) -> str:
    """The platform's URL as this client reaches it.

    The client parses URLs in responses (`commitUrl`, the `url` of a new repo) against its own endpoint by host,
    and follows `Link` URLs verbatim, so a client that came in as `127.0.0.1` must get `127.0.0.1` back. Only
    the platform's own hosts reach the API (the proxy refuses others), so the Host header is safe to echo.
    """
    public = urlsplit(settings.base_url)
    host = request.headers.get("host", "")
    if not host or host.rsplit(":", 1)[0].strip("[]").lower() == (public.hostname or "").lower():
        return settings.base_url
    return f"{request.url.scheme}://{host}"


def next_page_link(request: Request, settings: Settings, **params: int) -> dict[str, str]:
    """A `Link` header to the next page: absolute (the client follows it verbatim) and on the raw path, so a
    revision or folder sent as `refs%2Fpr%2F1` or `a%20b` comes back exactly as it was sent."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.url.include_query_params(**params).query
    return {"Link": f'<{base_url(request, settings)}{raw.decode("latin-1")}?{query}>; rel="next"'}


def repo_url(base: str, repo_type: str, repo_id: str) -> str:
    return f"{base}/{URL_PREFIXES[repo_type]}{repo_id}"
