"""Sign in, create a space by dropping the hello example's files, watch it build, use the app in its page."""

from __future__ import annotations

import re
import zipfile

import pytest
from browserkit import NARROW, RECORD_BADGES, app_files, drop_files, shot, static_space
from playwright.sync_api import expect

from support.server import EXAMPLES

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_create_by_drop_watch_the_build_and_use_the_app(server, open_context):
    page = open_context("alice").new_page()
    page.add_init_script(RECORD_BADGES)
    page.goto("/new-space")
    page.fill("#space-name", "hello")
    drop_files(page, app_files(EXAMPLES / "hello"))
    expect(page.locator("[data-file-list] li")).to_have_count(2)
    expect(page.locator("[data-file-list]")).to_contain_text("app.py")
    page.click("[data-upload-submit]")

    # The space's page follows the build: its log streams in while the badge says it builds.
    page.wait_for_url("**/spaces/alice/hello")
    live_log = page.locator("#build-live [data-log=build]")
    expect(live_log).to_contain_text("==> Building alice/hello", timeout=60_000)
    expect(page.locator("[data-stage-badge]")).to_have_text(re.compile("Building|Starting"))
    expect(page.locator("[data-progress] .steps li.current")).to_have_text(re.compile("Building|Starting"))
    expect(live_log.locator("span").nth(3)).to_be_attached()  # a few lines in, for the screenshot
    shot(page, "build-in-progress")

    frame = page.frame_locator("iframe[data-app-frame]")
    expect(page.locator("[data-stage-badge]")).to_have_text("Running", timeout=240_000)
    badges = page.evaluate("window.__badges")
    assert badges[-1] == "Running", badges
    assert any(label in ("Building", "Starting") for label in badges[:-1]), badges  # it went live, not on reload
    expect(live_log).to_contain_text("==> Running at http://alice-hello.space.localhost")

    frame.get_by_label("Name").fill("Ada")
    frame.get_by_role("button", name="Submit").click()
    expect(frame.get_by_label("Greeting")).to_have_value("Hello Ada!", timeout=30_000)
    shot(page, "space-running")

    # The logs tab has both logs, live, from the same page (no reload).
    page.click(".tabs a[data-tab=logs]")
    expect(page).to_have_url(re.compile(r"/spaces/alice/hello/logs$"))
    expect(page.locator("[data-logpane=build]")).to_contain_text("==> Build done")
    page.click("[data-logtab=run]")
    expect(page.locator("[data-logpane=run]")).to_be_visible()

    # "Use via API": this space's real URL and its endpoint, from the app's /gradio_api/info.
    page.click(".tabs a[data-tab=api]")
    snippet = page.locator("code[data-snippet=python]").first
    expect(snippet).to_contain_text("Client('http://alice-hello.space.localhost:")
    expect(snippet).to_contain_text("api_name='/greet'")
    expect(page.locator("code[data-snippet=curl]").first).to_contain_text("/gradio_api/call/greet")
    expect(page.locator("code[data-snippet=hub]")).to_contain_text("get_space_runtime('alice/hello')")

    # Files: the tree at main, a text file, the history.
    page.click(".tabs >> text=Files")
    expect(page.locator("tr[data-entry='app.py']")).to_be_visible()
    page.click("tr[data-entry='app.py'] a")
    expect(page.locator("table[data-file='app.py']")).to_contain_text("def greet(name: str) -> str:")
    page.click("text=History")
    expect(page.locator("[data-commit]")).to_have_count(1)

    # Explore shows its card, from the README's front matter, among others.
    static_space(server, "admin/pixel-paint", "Pixel Paint", "🎨", ("pink", "yellow"), "Draw in your browser")
    static_space(server, "alice/weather-now", "Weather Now", "⛅", ("blue", "green"), "The sky above, in one page")
    static_space(server, "admin/field-notes", "Field Notes", "📝", ("indigo", "purple"), "Plain notes, kept as HTML")
    page.goto("/spaces")
    for repo_id in ("alice/hello", "admin/pixel-paint", "alice/weather-now", "admin/field-notes"):
        expect(page.locator(f"a[data-space='{repo_id}']")).to_contain_text("Running")
    shot(page, "explore")
    page.goto("/spaces?q=hello")
    card = page.locator("a[data-space='alice/hello']")
    expect(card).to_contain_text("Hello")
    expect(card).to_contain_text("Greets you by name")
    expect(card).to_contain_text("Running")
    expect(card).to_contain_text("👋")
    expect(page.locator("a[data-space]")).to_have_count(1)
    page.goto("/spaces?q=no-such-space-anywhere")
    expect(page.locator("a[data-space]")).to_have_count(0)

    narrow = open_context("alice", viewport=NARROW).new_page()
    narrow.goto("/spaces")
    expect(narrow.locator("a[data-space='alice/hello']")).to_be_visible()
    shot(narrow, "explore-narrow")
    narrow.goto("/spaces/alice/hello")
    expect(narrow.frame_locator("iframe[data-app-frame]").get_by_label("Name")).to_be_visible(timeout=60_000)
    shot(narrow, "space-running-narrow")


def test_create_from_a_dropped_archive(server, open_context, tmp_path):
    # A zip of a folder, as people make them: its top folder is left out.
    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((EXAMPLES / "static").iterdir()):
            zf.write(path, f"static-site/{path.name}")
    page = open_context("alice").new_page()
    page.goto("/new-space")
    page.fill("#space-name", "from-a-zip")
    page.check("input[name=sdk][value=static]")
    drop_files(page, [("site.zip", archive.read_bytes())])
    expect(page.locator("[data-file-list] li")).to_have_count(1)
    page.click("[data-upload-submit]")
    page.wait_for_url("**/spaces/alice/from-a-zip")
    expect(page.locator("[data-stage-badge]")).to_have_text("Running", timeout=120_000)
    page.goto("/spaces/alice/from-a-zip/tree/main")
    expect(page.locator("tr[data-entry='index.html']")).to_be_visible()
    expect(page.locator("tr[data-entry='README.md']")).to_be_visible()
