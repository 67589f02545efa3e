"""Create a space: the form. The page's script creates it through the API (`POST /api/repos/create`), sends the
dropped files or archive to `POST /api/spaces/{owner}/{name}/upload` with upload progress, then opens the
space's page, which follows the build. Both calls carry the session cookie and the CSRF header.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from spacehub import accounts, hardware
from spacehub.context import Platform
from spacehub.requestdeps import SESSION, get_platform
from spacehub.store.models import User
from spacehub.web.deps import HTMLRoute, signed_in_user
from spacehub.web.render import page

router = APIRouter(route_class=HTMLRoute, include_in_schema=False)

SDK_CHOICES = [("gradio", "Gradio", "A Python app with a web UI and an API, from app.py"),
               ("docker", "Docker", "Any app from a Dockerfile, serving on port 7860"),
               ("static", "Static", "HTML, CSS and JavaScript, served as files")]
STORAGE_CHOICES = [("", "None (ephemeral)"), ("small", "Small"), ("medium", "Medium"), ("large", "Large")]


@router.get("/new-space")
def new_space(request: Request, platform: Platform = Depends(get_platform), session: Session = SESSION,
              user: User = Depends(signed_in_user)) -> Response:
    owners = [user.name] + [org.name for org in accounts.user_orgs(session, user)]
    return page(request, "new_space.html", user=user, owners=owners, sdk_choices=SDK_CHOICES,
                hardware_choices=hardware.menu(platform.settings), storage_choices=STORAGE_CHOICES,
                max_upload_bytes=platform.settings.max_upload_bytes)
