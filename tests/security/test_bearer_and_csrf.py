"""Auth and the CSRF check agree on what a Bearer request is: a session cookie beside a blank or malformed
`Authorization: Bearer` is a cookie request, and without its CSRF token it is refused and changes nothing."""

from __future__ import annotations

import http.client
import json

import httpx
import pytest

from support.server import Server
from support.websession import sign_in

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("bearer") / "data")
    srv.start()
    srv.cli("users", "create", "carol", "--password", "carol-password-1")
    yield srv
    srv.stop()
    srv.kill_apps()  # apps outlive serve on purpose (re-adoption); not past this module


def _post_raw(server: Server, client: httpx.Client, path: str, body: dict[str, str],
              headers: dict[str, bytes]) -> tuple[int, dict[str, str], bytes]:
    """POST with header values sent byte for byte (httpx refuses a trailing blank, a real attacker does not)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    conn.putrequest("POST", path, skip_host=True)
    conn.putheader("Host", f"localhost:{server.port}")
    conn.putheader("Cookie", cookie)
    conn.putheader("Content-Type", "application/json")
    for name, value in headers.items():
        conn.putheader(name, value)
    payload = json.dumps(body).encode()
    conn.putheader("Content-Length", str(len(payload)))
    conn.endheaders(payload)
    response = conn.getresponse()
    answer = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    return answer


def _exists(server: Server, name: str) -> bool:
    return server.api.get(f"/api/spaces/carol/{name}").status_code == 200


# \xa0 and \x85 are whitespace to str.strip and not to bytes.strip: where auth and CSRF each stripped their own
# way, these two reached the handler with the cookie's user and no CSRF token.
@pytest.mark.parametrize("authorization", [b"Bearer", b"Bearer ", b"Bearer \t ", b"bearer  \xa0", b"Bearer \x85",
                                           b"Bearer a b"])
def test_blank_or_malformed_bearer_beside_a_cookie_needs_the_csrf_token(server, authorization):
    client, _csrf = sign_in(server, "carol", "carol-password-1")
    name = f"blank-{abs(hash(authorization)) % 10**8}"
    status, headers, body = _post_raw(server, client, "/api/repos/create",
                                      {"type": "space", "name": name, "sdk": "static"},
                                      {"Authorization": authorization})
    assert status == 403, body
    assert headers["x-error-code"] == "CSRFTokenInvalid"
    assert "CSRF token" in json.loads(body)["error"]
    assert not _exists(server, name)


def test_the_same_session_with_its_csrf_token_does_change_things(server):
    client, csrf = sign_in(server, "carol", "carol-password-1")
    status, _headers, body = _post_raw(server, client, "/api/repos/create",
                                       {"type": "space", "name": "with-csrf", "sdk": "static"},
                                       {"Authorization": b"Bearer ", "X-CSRF-Token": csrf.encode()})
    assert status == 200, body
    assert _exists(server, "with-csrf")


def test_a_well_formed_bearer_is_the_only_credential_even_beside_a_cookie(server):
    client, _csrf = sign_in(server, "carol", "carol-password-1")
    answer = client.post("/api/repos/create", json={"type": "space", "name": "by-bad-token", "sdk": "static"},
                         headers={"Authorization": "Bearer sh_not_a_real_token_at_all_0123456789"})
    assert answer.status_code == 401, answer.text
    assert not _exists(server, "by-bad-token")
