"""Duplicate a space from its page, with the Hub's semantics: files and variables are copied, secrets are not
(the copy's owner sets their own; the page names the keys the source has)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from spacehub import access, accounts, spaces, variables
from spacehub.context import Platform
from spacehub.errors import SpacehubError
from spacehub.requestdeps import SESSION, get_platform
from spacehub.store.models import Space, User
from spacehub.web.deps import HTMLRoute, signed_in_user
from spacehub.web.render import page

router = APIRouter(route_class=HTMLRoute, include_in_schema=False)


def _form(request: Request, session: Session, user: User, source: Space, *, owner: str, name: str,
          private: bool, error: str | None = None, status: int = 200) -> Response:
    owners = [user.name] + [org.name for org in accounts.user_orgs(session, user)]
    secret_keys = [row.key for row in variables.rows(session, source, secret=True)]
    return page(request, "duplicate.html", status=status, user=user, source=source, owners=owners, owner=owner,
                name=name, private=private, secret_keys=secret_keys, error=error)


@router.get("/spaces/{owner}/{name}/duplicate")
def duplicate_page(request: Request, owner: str, name: str, session: Session = SESSION,
                   user: User = Depends(signed_in_user)) -> Response:
    source = access.get_visible(session, user, owner, name)
    return _form(request, session, user, source, owner=user.name, name=source.name, private=source.private)


@router.post("/spaces/{owner}/{name}/duplicate")
def duplicate_space(request: Request, owner: str, name: str, new_owner: str = Form(""), new_name: str = Form(""),
                    visibility: str = Form("public"), platform: Platform = Depends(get_platform),
                    session: Session = SESSION, user: User = Depends(signed_in_user)) -> Response:
    source = access.get_visible(session, user, owner, name)
    private = visibility == "private"
    try:
        copy = spaces.duplicate(platform, session, user, source, new_owner.strip(), new_name.strip(),
                                private=private, hardware=None, sleep_time=None, secrets=[], variables=[])
        session.commit()
    except SpacehubError as exc:
        session.rollback()
        return _form(request, session, user, source, owner=new_owner, name=new_name, private=private,
                     error=exc.message, status=exc.status if exc.status < 500 else 400)
    return RedirectResponse(f"/spaces/{copy.owner}/{copy.name}", status_code=303)
