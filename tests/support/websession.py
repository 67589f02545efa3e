"""A signed-in browser session without a browser: httpx with a cookie jar, speaking the sign-in form."""

from __future__ import annotations

import re

import httpx

from support.server import Server

_CSRF_INPUT = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)"')
HTML = {"Accept": "text/html"}


def browser(server: Server, source: str = "127.0.0.1") -> httpx.Client:
    """A client of the public port from `source` (any 127.0.0.0/8 address is this machine), with no token."""
    return httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60,
                        headers={"Host": f"localhost:{server.port}"},
                        transport=httpx.HTTPTransport(local_address=source))


def form_token(client: httpx.Client, path: str = "/login") -> str:
    page = client.get(path, headers=HTML)
    found = _CSRF_INPUT.search(page.text)
    assert found, f"no sign-in form at {path}: {page.status_code} {page.text[:300]}"
    return found.group(1)


def try_sign_in(client: httpx.Client, name: str, password: str) -> httpx.Response:
    return client.post("/login", headers=HTML, data={"username": name, "password": password, "next": "/",
                                                     "csrf_token": form_token(client)})


def sign_in(server: Server, name: str, password: str, source: str = "127.0.0.1") -> tuple[httpx.Client, str]:
    """A client holding a signed-in session cookie, and that session's CSRF token."""
    client = browser(server, source)
    answer = try_sign_in(client, name, password)
    assert answer.status_code == 303, answer.text[:500]
    page = client.get("/settings/tokens", headers=HTML)
    found = _CSRF_META.search(page.text)
    assert found, page.text[:300]
    return client, found.group(1)
