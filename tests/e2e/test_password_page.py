"""The password page: a signed-in user changes their password, and only the new one signs in afterwards."""

from __future__ import annotations

import pytest
from browserkit import shot
from playwright.sync_api import BrowserContext, Page, expect

from support.server import Server

pytestmark = pytest.mark.browser


def sign_in(context: BrowserContext, name: str, password: str) -> Page:
    page = context.new_page()
    page.goto("/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("form[action='/login'] button[type=submit]")
    return page


def test_change_password_in_the_web_ui(server: Server, open_context) -> None:
    server.cli("users", "create", "erin", "--password", "erin-password-1")
    page = sign_in(open_context(), "erin", "erin-password-1")
    page.wait_for_url("**/spaces")
    page.click("summary:has-text('erin')")
    page.click("a[href='/settings/password']")

    page.fill("#current-password", "not-the-password")
    page.fill("#new-password", "erin-password-2")
    page.fill("#confirm-password", "erin-password-2")
    page.click("form[action='/settings/password'] button[type=submit]")
    expect(page.locator(".alert-error")).to_have_text("the current password is wrong")

    page.fill("#current-password", "erin-password-1")
    page.fill("#new-password", "erin-password-2")
    page.fill("#confirm-password", "erin-password-3")
    page.click("form[action='/settings/password'] button[type=submit]")
    expect(page.locator(".alert-error")).to_have_text("the two new passwords differ")

    page.fill("#current-password", "erin-password-1")
    page.fill("#new-password", "erin-password-2")
    page.fill("#confirm-password", "erin-password-2")
    page.click("form[action='/settings/password'] button[type=submit]")
    expect(page.locator("[data-password-changed]")).to_be_visible()
    shot(page, "password-changed")

    old = sign_in(open_context(), "erin", "erin-password-1")
    expect(old.locator(".alert-error")).to_contain_text("wrong username or password")
    new = sign_in(open_context(), "erin", "erin-password-2")
    new.wait_for_url("**/spaces")
