"""The web UI: server-rendered pages (Jinja2) with a little vanilla JavaScript, every asset served from here."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from spacehub.context import Platform
from spacehub.edge.spaceauth import SpaceAccess
from spacehub.errors import InvalidInput
from spacehub.redisconn import redis_url
from spacehub.secret import load_secret
from spacehub.settings import Settings
from spacehub.web.deps import WebContext
from spacehub.web.render import STATIC
from spacehub.web.sessions import SessionMiddleware, Sessions


def check_signup_policy(settings: Settings) -> None:
    """Open sign-up lets strangers run code: only when apps are isolated (the Docker runtime)."""
    if settings.signup == "open" and settings.runtime != "docker":
        raise InvalidInput("SPACEHUB_SIGNUP=open needs SPACEHUB_RUNTIME=docker: the process runtime runs every "
                           "app with the platform's own rights, so only admins may create accounts "
                           "(SPACEHUB_SIGNUP=admin)")


def install(app: FastAPI, platform: Platform) -> None:
    from spacehub.web import (
        accounts,
        duplicate,
        events,
        explore,
        new_space,
        repo_pages,
        settings_pages,
        space_pages,
    )

    check_signup_policy(platform.settings)
    secret = load_secret(platform.settings)
    sessions = Sessions(platform.settings, secret)
    app.state.web = WebContext(settings=platform.settings, sessions=sessions,
                               access=SpaceAccess(platform.settings, secret))
    app.add_middleware(SessionMiddleware, sessions=sessions,  # type: ignore[arg-type]
                       redis_url=lambda: redis_url(platform.settings))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (explore, accounts, new_space, space_pages, settings_pages, duplicate, events):
        app.include_router(module.router)
    # `/{owner}` matches any single segment and `/{owner}/{name}` (a model) any two: they go last.
    app.include_router(accounts.owner_router)
    app.include_router(repo_pages.router)
