"""A space's settings (its owners only): hardware, sleep time, visibility, variables, secrets, restart, delete.

Every change is a plain form POST (CSRF-checked by the session middleware) answered with a redirect back to
the page and a notice; a refused change re-renders the page with the reason and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import access, builds, hardware, ratelimit, spaces, variables
from spacehub.context import Platform
from spacehub.errors import InvalidInput, SpacehubError
from spacehub.requestdeps import SESSION, get_platform
from spacehub.stages import Stage
from spacehub.store.models import Space, SpaceVariable, User
from spacehub.web.deps import HTMLRoute, WebContext, signed_in_user, web_context
from spacehub.web.render import page, stage_look
from spacehub.web.space_pages import app_url, page_card, problem_of

router = APIRouter(route_class=HTMLRoute, include_in_schema=False)

SLEEP_CHOICES = [("", "Platform default"), ("-1", "Never"), ("300", "After 5 minutes"),
                 ("900", "After 15 minutes"), ("1800", "After 30 minutes"), ("3600", "After 1 hour"),
                 ("36000", "After 10 hours"), ("86400", "After 24 hours"), ("172800", "After 48 hours"),
                 ("604800", "After 1 week")]
NOTICES = {
    "hardware": "Hardware saved. A running app restarts on it.",
    "sleep": "Sleep time saved.",
    "visibility": "Visibility saved.",
    "variable": "Variable saved. A running app restarts to read it.",
    "variable-deleted": "Variable deleted. A running app restarts without it.",
    "secret": "Secret saved. A running app restarts to read it.",
    "secret-deleted": "Secret deleted. A running app restarts without it.",
    "restart": "Restarting the space.",
    "moved": "Space renamed: this is its new address.",
    "rebuild": "Rebuilding the space from scratch.",
    "pause": "Space paused.",
}


def _settings_page(request: Request, platform: Platform, session: Session, web: WebContext, user: User,
                   space: Space, *, notice: str | None = None, error: str | None = None,
                   status: int = 200) -> Response:
    rows = list(session.scalars(select(SpaceVariable).where(SpaceVariable.space_id == space.id)
                                .order_by(SpaceVariable.key)))
    return page(request, "space_settings.html", status=status, tab="settings", user=user, space=space,
                card=page_card(platform, space), look=stage_look(space.stage), can_write=True,
                space_url=web.settings.space_url(space.label), app_url=app_url(web, space, user),
                base=f"/spaces/{space.owner}/{space.name}", problem=problem_of(platform, space),
                variables=[v for v in rows if not v.secret], secrets=[v for v in rows if v.secret],
                hardware_choices=hardware.menu(platform.settings),
                sleep_choices=_sleep_choices(space.sleep_time), notice=notice,
                error=error)


def _sleep_choices(current: int | None) -> list[tuple[str, str]]:
    """The usual choices, plus the space's own value when the API set one of its own (it stays selected)."""
    if current is None or any(value == str(current) for value, _label in SLEEP_CHOICES):
        return SLEEP_CHOICES
    return [*SLEEP_CHOICES, (str(current), f"After {current} seconds")]


@router.get("/spaces/{owner}/{name}/settings")
def settings_page(request: Request, owner: str, name: str, saved: str | None = Query(None),
                  platform: Platform = Depends(get_platform), session: Session = SESSION,
                  web: WebContext = Depends(web_context), user: User = Depends(signed_in_user)) -> Response:
    space = access.get_writable(session, user, owner, name)
    return _settings_page(request, platform, session, web, user, space, notice=NOTICES.get(saved or ""))


def _change(request: Request, platform: Platform, session: Session, web: WebContext, user: User, owner: str,
            name: str, notice: str, apply: Callable[[Space], object]) -> Response:
    """Run one change; on a refusal roll back and show why on the page."""
    space = access.get_writable(session, user, owner, name)
    try:
        apply(space)
        session.commit()
    except SpacehubError as exc:
        session.rollback()
        space = access.get_writable(session, user, owner, name)
        return _settings_page(request, platform, session, web, user, space, error=exc.message,
                              status=exc.status if exc.status < 500 else 400)
    return RedirectResponse(f"/spaces/{space.owner}/{space.name}/settings?saved={notice}", status_code=303)


@router.post("/spaces/{owner}/{name}/settings/hardware")
def set_hardware(request: Request, owner: str, name: str, hardware: str = Form(""),
                 platform: Platform = Depends(get_platform), session: Session = SESSION,
                 web: WebContext = Depends(web_context), user: User = Depends(signed_in_user)) -> Response:
    return _change(request, platform, session, web, user, owner, name, "hardware",
                   lambda space: spaces.request_hardware(platform, session, space, hardware))


@router.post("/spaces/{owner}/{name}/settings/sleep")
def set_sleep(request: Request, owner: str, name: str, sleep_time: str = Form(""),
              platform: Platform = Depends(get_platform), session: Session = SESSION,
              web: WebContext = Depends(web_context), user: User = Depends(signed_in_user)) -> Response:
    def apply(space: Space) -> None:
        value = sleep_time.strip()
        if value and not value.lstrip("-").isdigit():
            raise InvalidInput(f"sleep time must be a number of seconds (got {value!r})")
        spaces.set_sleep_time(session, space, int(value) if value else None)

    return _change(request, platform, session, web, user, owner, name, "sleep", apply)


@router.post("/spaces/{owner}/{name}/settings/visibility")
def set_visibility(request: Request, owner: str, name: str, visibility: str = Form(""),
                   platform: Platform = Depends(get_platform), session: Session = SESSION,
                   web: WebContext = Depends(web_context), user: User = Depends(signed_in_user)) -> Response:
    def apply(space: Space) -> None:
        if visibility not in ("public", "private"):
            raise InvalidInput("visibility is public or private")
        spaces.set_visibility(session, space, private=visibility == "private")

    return _change(request, platform, session, web, user, owner, name, "visibility", apply)


@router.post("/spaces/{owner}/{name}/settings/move")
def move_space(request: Request, owner: str, name: str, new_owner: str = Form(""), new_name: str = Form(""),
               platform: Platform = Depends(get_platform), session: Session = SESSION,
               web: WebContext = Depends(web_context), user: User = Depends(signed_in_user)) -> Response:
    """Rename or transfer (the Hub's move_repo): the redirect goes to the space's new settings page."""
    return _change(request, platform, session, web, user, owner, name, "moved",
                   lambda space: spaces.move(platform, session, user, space, new_owner.strip(),
                                             new_name.strip()))


def _variable_route(kind: str) -> None:
    secret = kind == "secrets"
    singular = "secret" if secret else "variable"

    def save(request: Request, owner: str, name: str, key: str = Form(""), value: str = Form(""),
             description: str = Form(""), platform: Platform = Depends(get_platform),
             session: Session = SESSION, web: WebContext = Depends(web_context),
             user: User = Depends(signed_in_user)) -> Response:
        return _change(request, platform, session, web, user, owner, name, singular,
                       lambda space: variables.put(platform, session, space, key.strip(), value,
                                                   description.strip(), secret=secret))

    def delete(request: Request, owner: str, name: str, key: str = Form(""),
               platform: Platform = Depends(get_platform), session: Session = SESSION,
               web: WebContext = Depends(web_context), user: User = Depends(signed_in_user)) -> Response:
        return _change(request, platform, session, web, user, owner, name, f"{singular}-deleted",
                       lambda space: variables.delete(platform, session, space, key, secret=secret))

    router.add_api_route(f"/spaces/{{owner}}/{{name}}/settings/{kind}", save, methods=["POST"])
    router.add_api_route(f"/spaces/{{owner}}/{{name}}/settings/{kind}/delete", delete, methods=["POST"])


_variable_route("variables")
_variable_route("secrets")


@router.post("/spaces/{owner}/{name}/settings/restart")
def restart(request: Request, owner: str, name: str, factory: bool = Form(False),
            platform: Platform = Depends(get_platform), session: Session = SESSION,
            web: WebContext = Depends(web_context), user: User = Depends(signed_in_user)) -> Response:
    ratelimit.limiter_of(platform).take("build", ratelimit.peer_of(request), user.name)
    return _change(request, platform, session, web, user, owner, name, "rebuild" if factory else "restart",
                   lambda space: builds.restart(platform, session, space, factory=factory))


@router.post("/spaces/{owner}/{name}/settings/pause")
def pause(request: Request, owner: str, name: str, platform: Platform = Depends(get_platform),
          session: Session = SESSION, web: WebContext = Depends(web_context),
          user: User = Depends(signed_in_user)) -> Response:
    return _change(request, platform, session, web, user, owner, name, "pause",
                   lambda space: spaces.stop(platform, session, space, stage=Stage.PAUSED))


@router.post("/spaces/{owner}/{name}/settings/delete")
def delete(request: Request, owner: str, name: str, confirm: str = Form(""),
           platform: Platform = Depends(get_platform), session: Session = SESSION,
           web: WebContext = Depends(web_context), user: User = Depends(signed_in_user)) -> Response:
    space = access.get_writable(session, user, owner, name)
    if confirm.strip() != space.repo_id:
        return _settings_page(request, platform, session, web, user, space, status=400,
                              error=f"to delete, type the space's full name: {space.repo_id}")
    spaces.delete(platform, session, space)
    return RedirectResponse(f"/{space.owner}?deleted={space.name}", status_code=303)
