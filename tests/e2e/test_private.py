"""A private space: its owner uses the app in its page (the iframe's signed token becomes a cookie of the space's
own host); another signed-in user and an anonymous visitor get 404 on its page, its API and its subdomain."""

from __future__ import annotations

import pytest
from browserkit import app_files, drop_files
from playwright.sync_api import expect

from support.server import EXAMPLES

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_owner_uses_a_private_space_and_nobody_else_sees_it(server, open_context):
    owner = open_context("alice").new_page()
    owner.goto("/new-space")
    owner.fill("#space-name", "private-hello")
    owner.check("input[name=visibility][value=private]")
    drop_files(owner, app_files(EXAMPLES / "hello"))
    owner.click("[data-upload-submit]")
    owner.wait_for_url("**/spaces/alice/private-hello")
    expect(owner.locator(".space-title .pill")).to_have_text("Private")
    expect(owner.locator("[data-stage-badge]")).to_have_text("Running", timeout=240_000)

    iframe = owner.locator("iframe[data-app-frame]")
    assert "__sign=" in (iframe.get_attribute("src") or "")
    frame = owner.frame_locator("iframe[data-app-frame]")
    frame.get_by_label("Name").fill("Grace")
    frame.get_by_role("button", name="Submit").click()
    expect(frame.get_by_label("Greeting")).to_have_value("Hello Grace!", timeout=30_000)
    # The token went into a cookie: the app's own URL no longer carries it.
    app_url = owner.frames[1].url
    assert app_url.startswith(server.space_url("alice-private-hello")) and "__sign" not in app_url, app_url

    space_host = server.space_url("alice-private-hello")
    for who in ("bob", None):
        page = open_context(who).new_page()
        assert page.goto("/spaces/alice/private-hello").status == 404
        assert page.goto("/spaces/alice/private-hello/tree/main").status == 404
        assert page.request.get("/api/spaces/alice/private-hello").status == 404
        assert page.goto(space_host + "/").status == 404
        # A made-up token gets the same answer as a missing space.
        assert page.goto(space_host + "/?__sign=eyJzIjoxLCJ1IjoxfQ.forged.signature").status == 404
        page.goto("/spaces")
        expect(page.locator("a[data-space='alice/private-hello']")).to_have_count(0)

    # "Open app" takes the owner to the app's own host in a tab of its own, with a fresh token.
    direct = owner.context.new_page()
    assert direct.goto("/spaces/alice/private-hello/open").status == 200
    assert direct.url == space_host + "/"
    expect(direct.get_by_label("Name")).to_be_visible()
