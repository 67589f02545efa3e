"""Splitting the Hub's raw paths (revisions and file paths with %2F), byte ranges and download types."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from starlette.requests import Request

from spacehub.api.hub_files import _byte_range, _content_type
from spacehub.api.hubpaths import base_url, next_page_link, revision_after, revision_and_path
from spacehub.errors import NotFound
from spacehub.settings import Settings


def request(raw_path: str, host: str = "localhost:8000", query: str = "") -> Request:
    return Request({"type": "http", "method": "GET", "path": unquote(raw_path), "raw_path": raw_path.encode(),
                    "query_string": query.encode(), "headers": [(b"host", host.encode())], "scheme": "http",
                    "server": ("localhost", 8000)})


@pytest.mark.parametrize(("raw", "at", "expected"), [
    ("/api/models/a/b/tree/main", 4, ("main", "")),
    ("/api/models/a/b/tree/main/sub%20dir%2Fx.txt", 4, ("main", "sub dir/x.txt")),
    ("/api/models/a/b/tree/refs%2Fpr%2F1/a%2Fb", 4, ("refs/pr/1", "a/b")),
    ("/api/spaces/a/tree/tree/feature%2Fx/tree", 4, ("feature/x", "tree")),  # a repo named like the marker
    ("/a/b/resolve/feature%2Fx/dir/file%20name.bin", 2, ("feature/x", "dir/file name.bin")),
    ("/spaces/a/b/resolve/main/app.py", 3, ("main", "app.py")),
])
def test_revision_and_path_split_the_raw_path(raw: str, at: int, expected: tuple[str, str]) -> None:
    marker = raw.split("/")[at + 1]
    assert revision_and_path(request(raw), marker, at) == expected


def test_a_revision_is_the_whole_rest_encoded_or_not() -> None:
    assert revision_after(request("/api/models/a/b/commit/refs%2Fpr%2F1"), "commit", 4) == "refs/pr/1"
    assert revision_after(request("/api/models/a/b/commit/refs/pr/1"), "commit", 4) == "refs/pr/1"
    assert revision_after(request("/api/models/a/b/revision/"), "revision", 4) == "main"
    with pytest.raises(NotFound):
        revision_after(request("/api/models/a/b/commits/main"), "commit", 4)


def test_urls_in_answers_use_the_host_the_client_used() -> None:
    settings = Settings(public_url="https://hub.example.com")
    assert base_url(request("/", "hub.example.com"), settings) == "https://hub.example.com"
    assert base_url(request("/", "127.0.0.1:8000"), settings) == "http://127.0.0.1:8000"


def test_the_next_page_keeps_the_path_as_it_was_sent() -> None:
    settings = Settings(port=8000)
    link = next_page_link(request("/api/models/a/b/tree/refs%2Fpr%2F1/a%20b", query="recursive=true"), settings,
                          cursor=1000)
    assert link == {"Link": '<http://localhost:8000/api/models/a/b/tree/refs%2Fpr%2F1/a%20b'
                            '?recursive=true&cursor=1000>; rel="next"'}


@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 100, None),
    ("bytes=10-19", 100, (10, 19)),
    ("bytes=10-", 100, (10, 99)),
    ("bytes=90-200", 100, (90, 99)),
    ("bytes=-5", 100, (95, 99)),
    ("bytes=100-", 100, (100, 99)),  # unsatisfiable: the caller answers 416
    ("bytes=1-2,5-6", 100, None),  # several ranges: the whole file
    ("items=1-2", 100, None),
])
def test_byte_ranges(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert _byte_range(header, size) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("index.html", "text/plain; charset=utf-8"),  # shown as text, never rendered
    ("logo.svg", "application/octet-stream"),  # an image that can hold scripts
    ("app.js", "text/plain; charset=utf-8"),
    ("README.md", "text/plain; charset=utf-8"),
    ("notes.txt", "text/plain; charset=utf-8"),
    ("config.json", "application/json"),
    ("cat.png", "image/png"),
    ("model.safetensors", "application/octet-stream"),
])
def test_downloads_never_get_a_type_a_browser_would_run(path: str, expected: str) -> None:
    assert _content_type(path) == expected
