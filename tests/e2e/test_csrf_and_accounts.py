"""CSRF: a request from the platform's own origin with the session cookie but no CSRF token (what a malicious
same-site page would send) is refused with 403 and changes nothing; with the token it works. Accounts: sign-in
errors, the session cookie's attributes, tokens (shown once, listed, revoked), organizations and members."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post(page: Page, path: str, body: str, headers: dict[str, str]) -> int:
    """A fetch from the page (same origin, the session cookie goes along), as a script on it would send."""
    return int(page.evaluate(
        """async ([path, body, headers]) => {
            const response = await fetch(path, {method: "POST", body, headers, credentials: "same-origin",
                                                redirect: "manual"});
            return response.status || (response.type === "opaqueredirect" ? 303 : 0);
        }""", [path, body, headers]))


def variables(server, repo_id: str) -> dict[str, str]:
    rows = server.api.get(f"/api/spaces/{repo_id}/variables").json()
    return {key: value["value"] for key, value in rows.items()} if isinstance(rows, dict) else {
        row["key"]: row["value"] for row in rows}


def test_csrf_token_is_required_with_the_session_cookie(server, open_context):
    server.api.post("/api/repos/create", json={"type": "space", "name": "csrf-target", "organization": "alice",
                                               "sdk": "gradio"}).raise_for_status()
    page = open_context("alice").new_page()
    page.goto("/spaces/alice/csrf-target/settings")
    token = page.get_attribute("meta[name=csrf-token]", "content")
    assert token

    # A form post without the token: refused, nothing written.
    assert post(page, "/spaces/alice/csrf-target/settings/variables", "key=STOLEN&value=1", FORM) == 403
    # The API, authenticated by the same cookie, wants the token too.
    api = "/api/spaces/alice/csrf-target/variables"
    json_headers = {"Content-Type": "application/json"}
    assert post(page, api, '{"key": "API_STOLEN", "value": "1"}', json_headers) == 403
    # A wrong token is no token.
    assert post(page, api, '{"key": "API_STOLEN", "value": "1"}', {**json_headers, "X-CSRF-Token": "0" * 64}) == 403
    assert "STOLEN" not in variables(server, "alice/csrf-target")
    assert "API_STOLEN" not in variables(server, "alice/csrf-target")
    # Signing out is a change too.
    assert post(page, "/logout", "", FORM) == 403
    page.goto("/settings/tokens")
    expect(page.locator(".menu summary")).to_contain_text("alice")

    # The same requests with the token work.
    assert post(page, "/spaces/alice/csrf-target/settings/variables",
                f"key=WITH_TOKEN&value=yes&csrf_token={token}", FORM) == 303
    assert post(page, api, '{"key": "API_WITH_TOKEN", "value": "yes"}', {**json_headers, "X-CSRF-Token": token}) \
        == 200
    found = variables(server, "alice/csrf-target")
    assert found.get("WITH_TOKEN") == "yes" and found.get("API_WITH_TOKEN") == "yes", found


def test_bearer_tokens_need_no_csrf_token(server):
    response = server.api.post("/api/spaces/alice/csrf-target/variables", json={"key": "BY_TOKEN", "value": "1"})
    assert response.status_code == 200, response.text


def test_sign_in_errors_and_session_cookie(server, open_context):
    page = open_context().new_page()
    page.goto("/login")
    page.fill("#username", "alice")
    page.fill("#password", "wrong password")
    page.click("form[action='/login'] button[type=submit]")
    expect(page.locator(".alert-error")).to_contain_text("wrong username or password")

    page.fill("#password", "alice-password-1")
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url("**/spaces")
    cookie = next(c for c in page.context.cookies() if c["name"] == "spacehub_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert cookie["domain"] == "localhost"  # host-only: never sent to *.space.localhost
    # The sign-in form itself is CSRF-protected: a post without the page's token is refused.
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers={"Host": f"localhost:{server.port}"}) as c:
        assert c.post("/login", data={"username": "alice", "password": "alice-password-1"}).status_code == 403

    page.click(".menu summary")
    page.click("text=Sign out")
    expect(page.locator(".topnav")).to_contain_text("Sign in")
    # The old session is over on the server too, not just forgotten by this browser.
    page.context.add_cookies([cookie])
    page.goto("/settings/tokens")
    expect(page).to_have_url(f"{server.url}/login?next=/settings/tokens")


def test_tokens_are_shown_once_listed_and_revoked(server, open_context):
    page = open_context("bob").new_page()
    page.goto("/settings/tokens")
    page.fill("#token-name", "laptop")
    page.click("form[action='/settings/tokens'] button[type=submit]")
    secret = page.locator("#new-token").inner_text().strip()
    assert secret.startswith("sh_")
    whoami = httpx.get(f"{server.url}/api/whoami-v2", headers={"Authorization": f"Bearer {secret}"})
    assert whoami.json()["name"] == "bob"

    page.goto("/settings/tokens")
    row = page.locator("tr[data-token=laptop]")
    expect(row).to_contain_text(secret[:8])
    assert secret not in page.content()  # listed by its prefix only, never shown again
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button", has_text="Revoke").click()
    expect(page.locator("tr[data-token=laptop]")).to_have_count(0)
    assert httpx.get(f"{server.url}/api/whoami-v2", headers={"Authorization": f"Bearer {secret}"}).status_code \
        == 401


def test_organization_page_and_members(server, open_context):
    page = open_context("alice").new_page()
    page.goto("/organizations/new")
    page.fill("#org-name", "acme-lab")
    page.click("form[action='/organizations/new'] button[type=submit]")
    page.wait_for_url("**/acme-lab")
    expect(page.locator("li[data-member=alice]")).to_contain_text("admin")
    page.fill("#member-name", "bob")
    page.click("form[action='/organizations/acme-lab/members'] button[type=submit]")
    expect(page.locator("li[data-member=bob]")).to_contain_text("write")

    # bob may now create spaces for the organization; the new-space form offers it as an owner.
    bob = open_context("bob").new_page()
    bob.goto("/new-space")
    expect(bob.locator("#owner option[value=acme-lab]")).to_have_count(1)
    bob.goto("/acme-lab")
    expect(bob.locator("form[action='/organizations/acme-lab/members']")).to_have_count(0)  # not an org admin

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("li[data-member=bob] button").click()
    expect(page.locator("li[data-member=bob]")).to_have_count(0)


def test_sign_up_is_admin_only_by_default(server, open_context):
    page = open_context().new_page()
    response = page.goto("/join")
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_have_text("Sign-up is by invitation")


def test_an_admin_creates_a_user_who_then_signs_in(server, open_context):
    admin = open_context("carol").new_page()
    admin.goto("/join")
    admin.fill("#username", "dave")
    admin.fill("#password", "short")
    admin.evaluate("document.querySelector('#password').removeAttribute('minlength')")  # the server's rule
    admin.click("form[action='/join'] button[type=submit]")
    expect(admin.locator(".alert-error")).to_contain_text("at least 8 characters")
    admin.fill("#password", "dave-password-4444")
    admin.click("form[action='/join'] button[type=submit]")
    expect(admin.locator(".alert-ok")).to_contain_text("User dave was created")

    page = open_context().new_page()
    page.goto("/login")
    page.fill("#username", "dave")
    page.fill("#password", "dave-password-4444")
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url("**/spaces")
    expect(page.locator(".menu summary")).to_contain_text("dave")
