"""Rate limits: 429 with Retry-After and a JSON error past each limit; counted per real peer address (a spoofed
X-Forwarded-For moves nothing) and per account, so another address and another account go on unaffected.

A real `spacehub serve` with small limits; clients connect from distinct loopback addresses (127.0.0.0/8 is all
this machine), which the proxy sees as distinct peers.
"""

from __future__ import annotations

import itertools

import httpx
import pytest

from support.server import Server
from support.websession import HTML, browser, form_token, sign_in, try_sign_in

pytestmark = pytest.mark.timeout(600)
JSON = {"Accept": "application/json"}
_spoof = (f"203.0.113.{n}" for n in itertools.count(1))  # a new forged client address on every request


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("ratelimits") / "data", rate_limit_signin_address="3/600",
                 rate_limit_signin_account="5/600", rate_limit_invalid_token="3/600", rate_limit_signup="2/600",
                 rate_limit_writes="3/600", rate_limit_builds="2/600")
    srv.start()
    for name in ("erin", "fred", "gina", "hank", "ivy", "jack"):
        srv.cli("users", "create", name, "--password", f"{name}-password-1")
    for name in ("boss", "boss2"):
        srv.cli("users", "create", name, "--admin", "--password", f"{name}-password-1")
    yield srv
    srv.stop()
    srv.kill_apps()


def assert_limited(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text[:300]
    assert 1 <= int(answer.headers["retry-after"]) <= 600
    assert answer.headers["x-error-code"] == "RateLimited"
    assert "too many" in answer.json()["error"]


def spoofed() -> dict[str, str]:
    return {"X-Forwarded-For": next(_spoof), "X-Real-IP": next(_spoof), "Forwarded": f"for={next(_spoof)}"}


def api_client(server: Server, source: str, token: str) -> httpx.Client:
    client = browser(server, source)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def token_of(server: Server, user: str) -> str:
    return server.cli("token", "create", "--user", user, "--name", "rate").stdout.strip()


def test_failed_sign_ins_per_address(server):
    attacker = browser(server, "127.0.0.2")
    for _ in range(3):
        attacker.headers.update(spoofed())
        assert try_sign_in(attacker, "erin", "wrong-password").status_code == 401
    attacker.headers.update(spoofed())
    assert_limited(attacker.post("/login", headers=JSON, data={"username": "erin", "password": "erin-password-1",
                                                              "csrf_token": form_token(attacker)}))
    page = try_sign_in(attacker, "fred", "fred-password-1")  # the address is limited, whichever account
    assert page.status_code == 429 and "Too many attempts" in page.text and page.headers["retry-after"]
    # Another address, even one that forges the limited address as its X-Forwarded-For, signs in.
    other = browser(server, "127.0.0.3")
    other.headers["X-Forwarded-For"] = "127.0.0.2"
    assert try_sign_in(other, "erin", "erin-password-1").status_code == 303


def test_failed_sign_ins_per_account(server):
    for source, attempts in (("127.0.0.4", 3), ("127.0.0.5", 2)):
        client = browser(server, source)
        for _ in range(attempts):
            assert try_sign_in(client, "gina", "wrong-password").status_code == 401
    fresh = browser(server, "127.0.0.6")
    assert_limited(fresh.post("/login", headers=JSON, data={"username": "gina", "password": "gina-password-1",
                                                           "csrf_token": form_token(fresh)}))
    assert try_sign_in(fresh, "hank", "hank-password-1").status_code == 303  # another account: unaffected


def test_invalid_tokens(server):
    attacker = browser(server, "127.0.0.7")
    for n in range(3):
        answer = attacker.get("/api/whoami-v2", headers={"Authorization": f"Bearer sh_guess_{n:030d}", **spoofed()})
        assert answer.status_code == 401
    assert_limited(attacker.get("/api/whoami-v2", headers={"Authorization": f"Bearer {server.token}", **spoofed()}))
    other = browser(server, "127.0.0.8")
    assert other.get("/api/whoami-v2", headers={"Authorization": f"Bearer {server.token}",
                                                "X-Forwarded-For": "127.0.0.7"}).status_code == 200


def test_account_creation(server):
    admin, csrf = sign_in(server, "boss", "boss-password-1", source="127.0.0.9")
    for name in ("kim", "lee"):
        made = admin.post("/join", headers=HTML, data={"username": name, "password": "long-password-1",
                                                       "csrf_token": csrf})
        assert made.status_code == 200 and f"User <strong>{name}</strong> was created" in made.text
    assert_limited(admin.post("/join", headers=JSON, data={"username": "max", "password": "long-password-1",
                                                           "csrf_token": csrf}))
    assert server.cli("token", "create", "--user", "max", check=False).returncode != 0  # not created
    second, csrf2 = sign_in(server, "boss2", "boss2-password-1", source="127.0.0.10")
    made = second.post("/join", headers=HTML, data={"username": "max", "password": "long-password-1",
                                                    "csrf_token": csrf2})
    assert made.status_code == 200 and "User <strong>max</strong> was created" in made.text


def _files(text: str) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", ("README.md", b"---\nsdk: static\n---\n")), ("files", ("index.html", text.encode()))]


def test_uploads_commits_and_pushes(server):
    ivy = api_client(server, "127.0.0.11", token_of(server, "ivy"))
    assert ivy.post("/api/repos/create", json={"type": "space", "name": "w", "sdk": "static"}).status_code == 200
    for n in range(3):
        ivy.headers.update(spoofed())
        assert ivy.post("/api/spaces/ivy/w/upload", files=_files(f"v{n}")).status_code == 200
    assert_limited(ivy.post("/api/spaces/ivy/w/upload", files=_files("v3")))
    commit = ivy.post("/api/spaces/ivy/w/commit/main", content=b'{"key":"header","value":{"summary":"x"}}\n',
                      headers={"Content-Type": "application/x-ndjson"})
    assert_limited(commit)
    # The same account from another address: still its limit; another account from the first address: the
    # address's; another account from another address: unaffected.
    ivy_elsewhere = api_client(server, "127.0.0.12", str(ivy.headers["Authorization"]).split()[1])
    assert_limited(ivy_elsewhere.post("/api/spaces/ivy/w/upload", files=_files("v4")))
    jack_token = token_of(server, "jack")
    jack_there = api_client(server, "127.0.0.11", jack_token)
    assert jack_there.post("/api/repos/create", json={"type": "space", "name": "w", "sdk": "static"}).is_success
    assert_limited(jack_there.post("/api/spaces/jack/w/upload", files=_files("j")))
    jack = api_client(server, "127.0.0.13", jack_token)
    assert jack.post("/api/spaces/jack/w/upload", files=_files("j")).status_code == 200


def test_build_starts(server):
    hank = api_client(server, "127.0.0.14", token_of(server, "hank"))
    assert hank.post("/api/repos/create", json={"type": "space", "name": "b", "sdk": "static"}).status_code == 200
    assert hank.post("/api/spaces/hank/b/upload", files=_files("b")).status_code == 200
    server.wait_stage("hank/b", {"RUNNING"})
    for _ in range(2):
        hank.headers.update(spoofed())
        assert hank.post("/api/spaces/hank/b/restart", params={"factory": "true"}).status_code == 200
    assert_limited(hank.post("/api/spaces/hank/b/restart"))
    fred = api_client(server, "127.0.0.15", token_of(server, "fred"))
    assert fred.post("/api/repos/create", json={"type": "space", "name": "b", "sdk": "static"}).status_code == 200
    assert fred.post("/api/spaces/fred/b/upload", files=_files("f")).status_code == 200
    server.wait_stage("fred/b", {"RUNNING"})
    assert fred.post("/api/spaces/fred/b/restart").status_code == 200
