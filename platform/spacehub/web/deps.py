"""What web handlers need per request: the web context, the browser session, and an HTML-speaking route class."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from spacehub.edge.spaceauth import SpaceAccess
from spacehub.errors import SpacehubError, Unauthorized
from spacehub.httperrors import error_response
from spacehub.ratelimit import RateLimited
from spacehub.requestdeps import optional_user
from spacehub.settings import Settings
from spacehub.store.models import User
from spacehub.web.render import page
from spacehub.web.sessions import Sessions, WebSession


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    sessions: Sessions
    access: SpaceAccess


def web_context(request: Request) -> WebContext:
    context: WebContext = request.app.state.web
    return context


def web_session(request: Request) -> WebSession:
    session: WebSession = request.state.web_session
    return session


class SignInRequired(Unauthorized):
    """A page that needs a signed-in user: browsers are sent to the sign-in page and back."""


class HTMLRoute(APIRoute):
    """Errors of web pages become pages (the API's JSON answers stay for /api)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={target}", status_code=303)
            except RateLimited as exc:  # a page for a browser, the API's JSON for anything else; both say when
                retry = {"Retry-After": str(exc.retry_after_s)}
                if "text/html" not in request.headers.get("accept", ""):
                    return error_response(exc.status, exc.message, exc.code, headers=retry)
                user = getattr(request.state, "web_user", None)
                answer = page(request, "error.html", status=exc.status, user=user, title="Too many attempts",
                              message=exc.message)
                answer.headers.update(retry)
                return answer
            except SpacehubError as exc:
                titles = {401: "Sign in needed", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
                user = getattr(request.state, "web_user", None)
                return page(request, "error.html", status=exc.status, user=user,
                            title=titles.get(exc.status, "Something went wrong"), message=exc.message)

        return handle


def current_user(request: Request, user: User | None = Depends(optional_user)) -> User | None:
    request.state.web_user = user  # error pages still show who is signed in
    return user


def signed_in_user(user: User | None = Depends(current_user)) -> User:
    if user is None:
        raise SignInRequired("sign in to see this page")
    return user
