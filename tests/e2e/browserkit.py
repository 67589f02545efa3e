"""Helpers of the browser tests: signing in, dropping files, screenshots, watching the stage badge."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect, sync_playwright

from support.server import REPO

CHROMIUM = "/usr/bin/chromium"
EXPECT_TIMEOUT_MS = 30_000
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
APPS = Path(__file__).resolve().parent / "apps"
WIDE = {"width": 1280, "height": 860}
NARROW = {"width": 390, "height": 844}
# Playwright launches Chromium with ThirdPartyStoragePartitioning off (its issue 32230); Chromium as people run it
# has it on. Without it a cross-site frame, such as a space's own host inside its page, gets no localStorage at
# all, and Gradio's ChatInterface (whose BrowserState reads localStorage unguarded) never finishes loading.
# A later --disable-features replaces Playwright's list: restate it without that feature.
PLAYWRIGHT_DISABLED_FEATURES_BUT_PARTITIONING = (
    "AvoidUnnecessaryBeforeUnloadCheckSync,DestroyProfileOnBrowserClose,HttpsUpgrades,"
    "HttpsFirstBalancedModeAutoEnable,LensOverlay,MediaRouter,PaintHolding,AvoidCorsURLLoaderRestartOnRedirect,"
    "OptimizationHints,NetworkTimeServiceQuerying,AimEnabled,PreconnectToSearch"
)
PARTITIONED_ARGS = [*CHROMIUM_ARGS, f"--disable-features={PLAYWRIGHT_DISABLED_FEATURES_BUT_PARTITIONING}"]
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-admin-333"}
ADMINS = {"carol"}


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """The machine's Chromium, headless, for the `browser` fixtures (module scope: Playwright's sync API keeps an
    event loop running in this thread while it is open, and later tests in the same run call asyncio.run())."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/setup/system.sh (as root) first")
    # Under `make test`'s three lanes on two cores a Gradio page can take longer than Playwright's default 5 s to
    # draw; an expectation that fails still fails, only later.
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def sign_in(page: Page, user: str) -> None:
    page.goto("/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url("**/spaces")
    page.close()


def shot(page: Page, name: str, *, full_page: bool = False) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def app_files(folder: Path) -> list[tuple[str, bytes]]:
    return [(path.name, path.read_bytes()) for path in sorted(folder.iterdir()) if path.is_file()]


def drop_files(page: Page, files: list[tuple[str, bytes]], target: str = "[data-dropzone]") -> None:
    """Drop files on the drop zone, as a drag-and-drop from the desktop delivers them."""
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, data] of files) {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name));
            }
            return transfer;
        }""", [[name, base64.b64encode(data).decode()] for name, data in files])
    page.dispatch_event(target, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(target, "drop", {"dataTransfer": transfer})


# Every badge label a page shows, in order (the stage badge updates live from the page's stream).
RECORD_BADGES = """
window.__badges = [];
document.addEventListener("DOMContentLoaded", () => {
  const badge = document.querySelector("[data-stage-badge]");
  if (!badge) return;
  window.__badges.push(badge.textContent.trim());
  new MutationObserver(() => {
    const label = badge.textContent.trim();
    if (window.__badges[window.__badges.length - 1] !== label) window.__badges.push(label);
  }).observe(badge, {childList: true, characterData: true, subtree: true});
});
"""


def static_space(server, repo_id: str, title: str, emoji: str, colors: tuple[str, str], description: str) -> None:
    """A small running space (sdk: static builds nothing), so explore has a few cards to show."""
    owner, name = repo_id.split("/")
    server.api.post("/api/repos/create", json={"type": "space", "name": name, "organization": owner,
                                               "sdk": "static"}).raise_for_status()
    readme = (f"---\ntitle: {title}\nemoji: {emoji}\ncolorFrom: {colors[0]}\ncolorTo: {colors[1]}\nsdk: static\n"
              f"app_file: index.html\nshort_description: {description}\n---\n")
    files = [("files", ("README.md", readme.encode())),
             ("files", ("index.html", f"<!doctype html><h1>{title}</h1>".encode()))]
    server.api.post(f"/api/spaces/{repo_id}/upload", files=files).raise_for_status()
    server.wait_stage(repo_id, {"RUNNING"})


# Chromium's own notice that it did not honour an app's `autofocus` inside a frame from another site (a space's
# host inside its page on the UI's host, as on the Hub): a browser policy at work, not a fault of the page.
AUTOFOCUS_NOTICE = re.compile(r"Blocked autofocusing on a <\w+> element in a cross-origin subframe\.")
# What Chromium says about requests cut short because the machine's network interfaces changed (on a shared test
# machine, another test creating a Docker bridge): the machine's doing, not the page's; such a load is retried.
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"


class Offsite:
    """Records, for a browser context, every request to a host that is not the install's own (its UI's host or a
    host under its spaces domain) and every console error or uncaught page error."""

    def __init__(self, context: BrowserContext, own_host: str, spaces_domain: str) -> None:
        self.own_host, self.spaces_domain = own_host, spaces_domain
        self.requests: list[str] = []
        self.errors: list[str] = []
        context.on("request", self._request)
        context.on("page", self._page)

    def _request(self, request: Request) -> None:
        url = urlsplit(request.url)
        if url.scheme not in ("http", "https", "ws", "wss"):
            return  # data:, blob:, about: stay in the page
        host = url.hostname or ""
        if host != self.own_host and not host.endswith("." + self.spaces_domain):
            self.requests.append(request.url)

    def _page(self, page: Page) -> None:
        page.on("console", lambda message: self.errors.append(f"{page.url}: {message.text}")
                if message.type == "error" and not AUTOFOCUS_NOTICE.fullmatch(message.text) else None)
        page.on("response", lambda response: self.errors.append(f"{response.status} {response.url}")
                if response.status >= 400 else None)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))

    def network_changed(self) -> bool:
        """Did the machine's network change under this load (so its errors say nothing about the page)?"""
        return any(NETWORK_CHANGED in error for error in self.errors)
