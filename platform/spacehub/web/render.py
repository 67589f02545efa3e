"""Rendering: the Jinja2 environment, the look of stages and cards, and the page response helper."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from spacehub import __version__
from spacehub.stages import SERVING, Stage
from spacehub.store.models import Space, User

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class StageLook:
    label: str
    tone: str  # css modifier: ok, busy, start, idle, error
    group: str  # which panel the space page shows: app, building, starting, error, idle, empty


_STAGES: dict[str, StageLook] = {
    Stage.RUNNING: StageLook("Running", "ok", "app"),
    Stage.RUNNING_BUILDING: StageLook("Running · building", "ok", "app"),
    Stage.RUNNING_APP_STARTING: StageLook("Running · restarting", "ok", "app"),
    Stage.BUILDING: StageLook("Building", "busy", "building"),
    Stage.APP_STARTING: StageLook("Starting", "start", "building"),
    Stage.SLEEPING: StageLook("Sleeping", "idle", "app"),
    Stage.PAUSED: StageLook("Paused", "idle", "idle"),
    Stage.STOPPED: StageLook("Stopped", "idle", "idle"),
    Stage.BUILD_ERROR: StageLook("Build error", "error", "error"),
    Stage.CONFIG_ERROR: StageLook("Config error", "error", "error"),
    Stage.RUNTIME_ERROR: StageLook("Runtime error", "error", "error"),
    Stage.NO_APP_FILE: StageLook("No app file", "idle", "empty"),
    Stage.DELETING: StageLook("Deleting", "idle", "idle"),
}


def stage_look(stage: str) -> StageLook:
    return _STAGES.get(stage, StageLook(stage.replace("_", " ").title(), "idle", "idle"))


# The Hub's card colours (`colorFrom` / `colorTo`), as its Tailwind shades.
CARD_COLORS = {"red": "#ef4444", "yellow": "#eab308", "green": "#22c55e", "blue": "#3b82f6",
               "indigo": "#6366f1", "purple": "#a855f7", "pink": "#ec4899", "gray": "#6b7280",
               "orange": "#f97316", "teal": "#14b8a6"}
_PALETTE = list(CARD_COLORS)
_EMOJIS = ["🚀", "🌍", "🔥", "🐢", "🦀", "🧠", "🎨", "📚", "🌸", "⚡", "🐙", "🎈"]


def _pick(seed: str, choices: list[str], salt: str) -> str:
    digest = hashlib.sha256(f"{salt}:{seed}".encode()).digest()
    return choices[digest[0] % len(choices)]


@dataclass(frozen=True)
class Card:
    space: Space
    title: str
    emoji: str
    description: str
    color_from: str
    color_to: str

    @property
    def gradient(self) -> str:
        return f"linear-gradient(135deg, {self.color_from}, {self.color_to})"


def card_of(space: Space, front_matter: dict[str, Any] | None = None) -> Card:
    """What a space's card shows: its README front matter where it has some, stable defaults otherwise."""
    data: dict[str, Any] = front_matter or space.card_data or {}
    seed = space.key

    def color(key: str, salt: str) -> str:
        value = str(data.get(key) or "").lower()
        return CARD_COLORS.get(value) or CARD_COLORS[_pick(seed, _PALETTE, salt)]

    emoji = str(data.get("emoji") or "") or _pick(seed, _EMOJIS, "emoji")
    return Card(space=space, title=str(data.get("title") or space.name), emoji=emoji[:8],
                description=str(data.get("short_description") or ""), color_from=color("colorFrom", "from"),
                color_to=color("colorTo", "to"))


def timeago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    now = now or datetime.now(UTC).replace(tzinfo=None)
    seconds = max(0, int((now - value).total_seconds()))
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600),
                       ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def iso(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


env.filters.update(timeago=timeago, iso=iso, human_size=human_size, from_epoch=from_epoch)
env.globals.update(stage_look=stage_look, card_of=card_of, SERVING=SERVING, version=__version__)


# The platform's pages are never framed (an app on another host cannot overlay them to steal clicks).
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'", "X-Content-Type-Options": "nosniff"}


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = getattr(request.state, "web_session", None)
    user: User | None = context.pop("user", None)
    html = env.get_template(template).render(request=request, user=user, session=session,
                                             settings=request.app.state.platform.settings, **context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def fragment(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(env.get_template(template).render(**context), headers=PAGE_HEADERS)


def error_page_bytes(status: int, title: str, message: str) -> bytes:
    """A bare error page for answers sent before a handler runs (no user, no session)."""
    return env.get_template("error.html").render(request=None, user=None, session=None, status=status,
                                                 title=title, message=message, bare=True).encode()
