"""Helpers of the browser tests: signing in, dropping files, screenshots, watching the stage badge."""

from __future__ import annotations

import base64
from pathlib import Path

from playwright.sync_api import Page

from support.server import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
APPS = Path(__file__).resolve().parent / "apps"
WIDE = {"width": 1280, "height": 860}
NARROW = {"width": 390, "height": 844}
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-admin-333"}
ADMINS = {"carol"}


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
