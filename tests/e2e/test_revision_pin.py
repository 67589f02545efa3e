"""The revision pin reaches a browser using a Gradio space inside the platform's page: there the space's host is a
third party, so the proxy's cookie for it is `SameSite=None; Secure; Partitioned` (spacehub.edge.gateway), and the
browser keeps it beside the plain one a direct client gets."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from support.server import EXAMPLES

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_the_app_in_its_page_is_pinned_to_the_revision_that_served_it(server, open_context):
    server.cli("push", str(EXAMPLES / "hello"), "admin/pin-hello")
    server.wait_stage("admin/pin-hello", {"RUNNING"}, timeout=300)
    direct = server.space_get("admin-pin-hello", "/config")
    assert direct.status_code == 200
    pin = direct.cookies.get("spacehub-rev")
    assert pin, direct.headers.get_list("set-cookie")

    page = open_context().new_page()
    page.goto("/spaces/admin/pin-hello")
    frame = page.frame_locator("iframe[data-app-frame]")
    frame.get_by_label("Name").fill("Ada")
    frame.get_by_role("button", name="Submit").click()
    expect(frame.get_by_label("Greeting")).to_have_value("Hello Ada!", timeout=60_000)
    framed = [c for c in page.context.cookies() if c["name"] == "spacehub-rev-framed"]
    assert framed and {c["value"] for c in framed} == {pin}, page.context.cookies()
    assert all(c["sameSite"] == "None" and c["secure"] for c in framed), framed
