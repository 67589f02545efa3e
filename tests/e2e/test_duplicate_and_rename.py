"""Duplicate a space from its page (files and variables copied, secrets not) and rename it from its settings."""

from __future__ import annotations

import pytest
from browserkit import shot, static_space
from playwright.sync_api import expect

from support.server import Server

pytestmark = pytest.mark.browser


def test_duplicate_copies_variables_not_secrets(server: Server, open_context) -> None:
    static_space(server, "alice/dup-source", "Dup source", "🧬", ("green", "blue"), "a space to copy")
    server.api.post("/api/spaces/alice/dup-source/variables", json={"key": "GREETING", "value": "hi"}
                    ).raise_for_status()
    server.api.post("/api/spaces/alice/dup-source/secrets", json={"key": "API_KEY", "value": "s3cret"}
                    ).raise_for_status()
    page = open_context("bob").new_page()
    page.goto("/spaces/alice/dup-source")
    page.click("[data-duplicate]")
    expect(page.locator("[data-secrets-not-copied]")).to_contain_text("API_KEY")
    page.fill("#dup-name", "dup-copy")
    shot(page, "duplicate")
    page.click("form button[type=submit]:has-text('Duplicate space')")
    page.wait_for_url("**/spaces/bob/dup-copy")
    variables = server.api.get("/api/spaces/bob/dup-copy/variables").json()
    assert variables["GREETING"]["value"] == "hi"
    assert server.api.get("/api/spaces/bob/dup-copy/secrets").json() == {}
    files = server.api.get("/api/spaces/bob/dup-copy/tree/main").json()
    assert {"README.md", "index.html"} <= {entry["path"] for entry in files}


def test_rename_from_the_settings_page(server: Server, open_context) -> None:
    static_space(server, "alice/old-name", "Renamed", "🏷️", ("pink", "purple"), "a space to rename")
    page = open_context("alice").new_page()
    page.goto("/spaces/alice/old-name/settings")
    page.fill("#move-name", "new-name")
    page.click("#move button[type=submit]")
    page.wait_for_url("**/spaces/alice/new-name/settings?saved=moved")
    expect(page.locator(".alert")).to_contain_text("Space renamed")
    shot(page, "rename")
    assert server.api.get("/api/spaces/alice/old-name").status_code == 404
    assert server.api.get("/api/spaces/alice/new-name").json()["id"] == "alice/new-name"
