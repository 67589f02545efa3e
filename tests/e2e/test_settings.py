"""Settings: a variable and a secret reach the app after a restart; secrets are never shown back; delete."""

from __future__ import annotations

import httpx
import pytest
from browserkit import APPS, NARROW, shot
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

SECRET = "swordfish-3141"


def read_env(page: Page, expected: str) -> None:
    """Press the app's button until it shows `expected` (the app may still be restarting onto it)."""
    frame = page.frame_locator("iframe[data-app-frame]")
    shown = frame.get_by_label("Environment")
    for _attempt in range(60):
        frame.get_by_role("button", name="Read the environment").click()
        try:
            expect(shown).to_have_value(expected, timeout=2_000)
            return
        except AssertionError:
            page.reload()
    expect(shown).to_have_value(expected)


def test_variable_and_secret_reach_the_app_after_a_restart_then_delete(server, open_context):
    page = open_context("alice").new_page()

    # Create it empty, then upload a folder from its own page (the folder's name is left out).
    page.goto("/new-space")
    page.fill("#space-name", "envshow")
    page.click("[data-upload-submit]")
    page.wait_for_url("**/spaces/alice/envshow")
    expect(page.locator("[data-problem=NO_APP_FILE]")).to_be_visible()
    page.set_input_files("[data-pick-folder]", str(APPS / "envshow"))
    expect(page.locator("[data-file-list]")).to_contain_text("README.md")
    expect(page.locator("[data-file-list]")).not_to_contain_text("envshow/")
    page.click("[data-upload-submit]")

    expect(page.locator("[data-stage-badge]")).to_have_text("Running", timeout=240_000)
    read_env(page, "GREETING=<unset> SECRET_WORD=<unset>")

    page.goto("/spaces/alice/envshow/settings")
    page.fill("#var-key", "GREETING")
    page.fill("#var-value", "hello-from-a-variable")
    page.click("form[data-form=variable] button[type=submit]")
    expect(page.locator("[data-notice]")).to_contain_text("Variable saved")
    expect(page.locator("tr[data-variable=GREETING]")).to_contain_text("hello-from-a-variable")

    page.fill("#secret-key", "SECRET_WORD")
    page.fill("#secret-value", SECRET)
    page.click("form[data-form=secret] button[type=submit]")
    expect(page.locator("[data-notice]")).to_contain_text("Secret saved")
    expect(page.locator("tr[data-secret=SECRET_WORD]")).to_be_visible()
    assert SECRET not in page.content()  # write-only: never shown back
    shot(page, "settings", full_page=True)
    narrow = open_context("alice", viewport=NARROW).new_page()
    narrow.goto("/spaces/alice/envshow/settings")
    expect(narrow.locator("tr[data-secret=SECRET_WORD]")).to_be_visible()
    shot(narrow, "settings-narrow")

    page.click("[data-action=restart]")
    expect(page.locator("[data-notice]")).to_contain_text("Restarting")
    page.goto("/spaces/alice/envshow")
    expect(page.locator("[data-stage-badge]")).to_have_text("Running", timeout=120_000)
    expect(page.locator("iframe[data-app-frame]")).to_be_visible()
    read_env(page, f"GREETING=hello-from-a-variable SECRET_WORD={SECRET}")

    # Delete, with its confirmation: the button wakes up only with the full name typed.
    page.goto("/spaces/alice/envshow/settings")
    delete = page.locator("[data-delete-button]")
    expect(delete).to_be_disabled()
    page.fill("#delete-confirm", "alice/envshow")
    expect(delete).to_be_enabled()
    delete.click()
    page.wait_for_url("**/alice?deleted=envshow", timeout=90_000)  # it stops the app first: slow on a loaded machine
    expect(page.locator(".alert-ok")).to_contain_text("alice/envshow was deleted")
    assert page.goto("/spaces/alice/envshow").status == 404
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        assert client.get("/", headers={"Host": server.host("alice-envshow")}).status_code == 404


def test_delete_refuses_without_the_typed_name(server, open_context):
    server.api.post("/api/repos/create", json={"type": "space", "name": "keepme", "organization": "alice",
                                               "sdk": "gradio"}).raise_for_status()
    page = open_context("alice").new_page()
    page.goto("/spaces/alice/keepme/settings")
    # Even when the browser-side check is bypassed, the server wants the name.
    page.fill("#delete-confirm", "alice/keep")
    page.evaluate("document.querySelector('[data-delete-button]').disabled = false")
    page.click("[data-delete-button]")
    expect(page.locator("[data-error]")).to_contain_text("type the space's full name: alice/keepme")
    assert page.goto("/spaces/alice/keepme").status == 200
