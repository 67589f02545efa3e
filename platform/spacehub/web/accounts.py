"""Accounts pages: sign in / out, sign-up, API tokens, organizations and their members, an owner's page."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import access, accounts, ratelimit
from spacehub.context import Platform
from spacehub.errors import Forbidden, InvalidInput, NotFound, SpacehubError
from spacehub.requestdeps import SESSION, get_platform
from spacehub.store.models import Membership, Organization, Token, User, utcnow
from spacehub.web.deps import HTMLRoute, WebContext, current_user, signed_in_user, web_context, web_session
from spacehub.web.render import page
from spacehub.web.sessions import WebSession

router = APIRouter(route_class=HTMLRoute, include_in_schema=False)
owner_router = APIRouter(route_class=HTMLRoute, include_in_schema=False)

MIN_PASSWORD = 8
ROLES = ("admin", "write", "read")


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another one."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    return target


def _signup_allowed(platform: Platform, user: User | None) -> bool:
    return platform.settings.signup == "open" or bool(user and user.is_admin)


@router.get("/login")
def login_page(request: Request, next: str | None = None,
               user: User | None = Depends(current_user)) -> Response:
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return page(request, "login.html", next=_safe_next(next), error=None, username="")


@router.post("/login")
def login(request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/"),
          platform: Platform = Depends(get_platform), session: Session = SESSION,
          web: WebContext = Depends(web_context), browser: WebSession = Depends(web_session)) -> Response:
    limiter, address, account = ratelimit.limiter_of(platform), ratelimit.peer_of(request), username.strip()
    limiter.check("signin", address, account)
    try:
        user = accounts.check_password(session, account, password)
    except SpacehubError as exc:
        limiter.hit("signin", address, account)
        return page(request, "login.html", status=401, next=_safe_next(next), error=exc.message,
                    username=username)
    web.sessions.sign_in(platform.redis, browser, user.id)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(platform: Platform = Depends(get_platform), web: WebContext = Depends(web_context),
           browser: WebSession = Depends(web_session)) -> Response:
    web.sessions.sign_out(platform.redis, browser)
    return RedirectResponse("/", status_code=303)


@router.get("/join")
def join_page(request: Request, platform: Platform = Depends(get_platform),
              user: User | None = Depends(current_user)) -> Response:
    allowed = _signup_allowed(platform, user)
    return page(request, "join.html", status=200 if allowed else 403, user=user, allowed=allowed, error=None,
                username="", created=None)


@router.post("/join")
def join(request: Request, username: str = Form(""), password: str = Form(""),
         platform: Platform = Depends(get_platform), session: Session = SESSION,
         user: User | None = Depends(current_user), web: WebContext = Depends(web_context),
         browser: WebSession = Depends(web_session)) -> Response:
    if not _signup_allowed(platform, user):
        raise Forbidden("sign-up is by invitation on this platform: an admin creates accounts")
    ratelimit.limiter_of(platform).take("signup", ratelimit.peer_of(request), user.name if user else None)
    username = username.strip()
    try:
        if len(password) < MIN_PASSWORD:
            raise InvalidInput(f"the password needs at least {MIN_PASSWORD} characters")
        created = accounts.create_user(session, username, password=password)
        session.commit()
    except SpacehubError as exc:
        session.rollback()
        return page(request, "join.html", status=400, user=user, allowed=True, error=exc.message,
                    username=username, created=None)
    if user is None:  # open sign-up: the new user is signed in
        web.sessions.sign_in(platform.redis, browser, created.id)
        return RedirectResponse("/", status_code=303)
    return page(request, "join.html", user=user, allowed=True, error=None, username="", created=created.name)


# Password

def _password_page(request: Request, user: User, *, error: str | None = None, done: bool = False,
                   status: int = 200) -> HTMLResponse:
    return page(request, "password.html", status=status, user=user, error=error, done=done,
                has_password=bool(user.password_hash), min_length=MIN_PASSWORD)


@router.get("/settings/password")
def password_page(request: Request, user: User = Depends(signed_in_user)) -> Response:
    return _password_page(request, user)


@router.post("/settings/password")
def change_password(request: Request, current: str = Form(""), new: str = Form(""), confirm: str = Form(""),
                    session: Session = SESSION, user: User = Depends(signed_in_user)) -> Response:
    try:
        if user.password_hash:
            accounts.check_password(session, user.name, current)
        if len(new) < MIN_PASSWORD:
            raise InvalidInput(f"the new password needs at least {MIN_PASSWORD} characters")
        if new != confirm:
            raise InvalidInput("the two new passwords differ")
    except SpacehubError as exc:
        message = "the current password is wrong" if exc.status == 401 else exc.message
        return _password_page(request, user, error=message, status=400)
    accounts.set_password(user, new)
    session.commit()
    return _password_page(request, user, done=True)


# API tokens

def _tokens_page(request: Request, session: Session, user: User, *, new_secret: str | None = None,
                 error: str | None = None, status: int = 200) -> HTMLResponse:
    tokens = list(session.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.created_at.desc())))
    return page(request, "tokens.html", status=status, user=user, tokens=tokens, new_secret=new_secret,
                error=error, now=utcnow())


@router.get("/settings/tokens")
def tokens_page(request: Request, session: Session = SESSION,
                user: User = Depends(signed_in_user)) -> Response:
    return _tokens_page(request, session, user)


@router.post("/settings/tokens")
def create_token(request: Request, name: str = Form(""), role: str = Form("write"), expires: str = Form(""),
                 session: Session = SESSION, user: User = Depends(signed_in_user)) -> Response:
    name = name.strip()
    if not name or len(name) > 100:
        return _tokens_page(request, session, user, error="give the token a name (up to 100 characters)",
                            status=400)
    if role not in ("read", "write"):
        return _tokens_page(request, session, user, error="a token's role is read or write", status=400)
    try:
        lifetime = accounts.parse_lifetime(expires) if expires.strip() else None
    except SpacehubError as exc:
        return _tokens_page(request, session, user, error=exc.message, status=400)
    new = accounts.create_token(session, user, name, role=role, expires_in=lifetime)
    session.commit()
    # Shown once, in this answer only; never stored in clear and never shown again.
    return _tokens_page(request, session, user, new_secret=new.secret)


@router.post("/settings/tokens/{token_id}/delete")
def revoke_token(token_id: int, session: Session = SESSION,
                 user: User = Depends(signed_in_user)) -> Response:
    accounts.revoke_token(session, user, token_id)
    session.commit()
    return RedirectResponse("/settings/tokens", status_code=303)


# Organizations

@router.get("/organizations/new")
def new_org_page(request: Request, user: User = Depends(signed_in_user)) -> Response:
    return page(request, "org_new.html", user=user, error=None, name="")


@router.post("/organizations/new")
def create_org(request: Request, name: str = Form(""), session: Session = SESSION,
               user: User = Depends(signed_in_user)) -> Response:
    name = name.strip()
    try:
        org = accounts.create_org(session, name)
        accounts.add_member(session, org, user, role="admin")
        session.commit()
    except SpacehubError as exc:
        session.rollback()
        return page(request, "org_new.html", status=400, user=user, error=exc.message, name=name)
    return RedirectResponse(f"/{org.name}", status_code=303)


def _org_admin(session: Session, user: User, org: Organization) -> bool:
    if user.is_admin:
        return True
    return bool(session.scalar(select(Membership.id).where(Membership.org_id == org.id,
                                                           Membership.user_id == user.id,
                                                           Membership.role == "admin")))


@router.post("/organizations/{org_name}/members")
def add_member(org_name: str, username: str = Form(""), role: str = Form("write"),
               session: Session = SESSION, user: User = Depends(signed_in_user)) -> Response:
    org = accounts.get_org(session, org_name)
    if not _org_admin(session, user, org):
        raise Forbidden(f"only admins of {org.name} can change its members")
    if role not in ROLES:
        raise Forbidden(f"a member's role is one of {', '.join(ROLES)}")
    accounts.add_member(session, org, accounts.get_user(session, username.strip()), role=role)
    session.commit()
    return RedirectResponse(f"/{org.name}", status_code=303)


@router.post("/organizations/{org_name}/members/{member}/delete")
def remove_member(org_name: str, member: str, session: Session = SESSION,
                  user: User = Depends(signed_in_user)) -> Response:
    org = accounts.get_org(session, org_name)
    if not _org_admin(session, user, org):
        raise Forbidden(f"only admins of {org.name} can change its members")
    target = accounts.get_user(session, member)
    membership = session.scalar(select(Membership).where(Membership.org_id == org.id,
                                                         Membership.user_id == target.id))
    if membership is None:
        raise NotFound(f"{target.name} is not a member of {org.name}")
    admins = session.scalars(select(Membership).where(Membership.org_id == org.id, Membership.role == "admin"))
    if membership.role == "admin" and len(list(admins)) == 1:
        raise Forbidden(f"{target.name} is the last admin of {org.name}: make someone else admin first")
    session.delete(membership)
    session.commit()
    return RedirectResponse(f"/{org.name}", status_code=303)


# An owner's page: a user's or an organization's spaces (and an organization's members)

@owner_router.get("/{owner}")
def owner_page(request: Request, owner: str, session: Session = SESSION,
               user: User | None = Depends(current_user)) -> Response:
    found_user = accounts.find_user(session, owner)
    org = None if found_user else session.scalar(select(Organization).where(
        Organization.name_key == owner.lower()))
    if found_user is None and org is None:
        raise NotFound(f"no user or organization named {owner!r}")
    name = found_user.name if found_user else org.name  # type: ignore[union-attr]
    shown = access.list_visible(session, user, author=name)
    models = access.list_visible(session, user, author=name, repo_type="model")
    datasets = access.list_visible(session, user, author=name, repo_type="dataset")
    members: list[Membership] = []
    orgs: list[Organization] = []
    is_org_admin = False
    if org is not None:
        members = sorted(org.members, key=lambda m: m.user.name_key)
        is_org_admin = user is not None and _org_admin(session, user, org)
    elif found_user is not None:
        orgs = accounts.user_orgs(session, found_user)
    return page(request, "owner.html", user=user, owner_name=name, org=org, owner_user=found_user,
                spaces=shown, models=models, datasets=datasets, members=members, orgs=orgs,
                is_org_admin=is_org_admin, roles=ROLES)
