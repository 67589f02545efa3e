"""Explore: the visible spaces as cards, newest change first, with a search by name."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from spacehub import access
from spacehub.requestdeps import SESSION
from spacehub.store.models import User
from spacehub.web.deps import HTMLRoute, current_user
from spacehub.web.render import page

router = APIRouter(route_class=HTMLRoute, include_in_schema=False)

PAGE_SIZE = 48


@router.get("/")
def home() -> Response:
    return RedirectResponse("/spaces", status_code=302)


@router.get("/spaces")
def explore(request: Request, q: str = Query("", max_length=200), p: int = Query(0, ge=0, le=10_000),
            session: Session = SESSION, user: User | None = Depends(current_user)) -> Response:
    search = q.strip()
    found = access.list_visible(session, user, search=search or None, limit=PAGE_SIZE + 1, offset=p * PAGE_SIZE)
    return page(request, "explore.html", user=user, spaces=found[:PAGE_SIZE], q=search, page_number=p,
                has_next=len(found) > PAGE_SIZE)
