"""Request-scoped dependencies: the platform, a DB session, and who is calling."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from spacehub import ratelimit
from spacehub.accounts import TOKEN_PREFIX, bearer_credential
from spacehub.context import Platform
from spacehub.errors import Unauthorized
from spacehub.store.models import User


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def get_session(platform: Platform = Depends(get_platform)) -> Iterator[Session]:
    """One session per request, committed when the handler returns (see SESSION)."""
    with platform.db.session() as session:
        yield session


# Depend on the session through this: scope="function" commits when the handler returns, before the response is
# sent (the default commits after, so a client reading right after a write could see the old state).
SESSION = Depends(get_session, scope="function")


def bearer_token(request: Request) -> str | None:
    return bearer_credential(request.headers.get("authorization"))


def optional_user(request: Request, session: Session = Depends(get_session, scope="function")) -> User | None:
    token = bearer_token(request)
    if token is None:
        session_user = getattr(request.state, "session_user_id", None)
        return session.get(User, session_user) if session_user else None
    limiter = ratelimit.limiter_of(get_platform(request))
    if not token.startswith(TOKEN_PREFIX) and len(token) < 8:
        limiter.take("token", ratelimit.peer_of(request))
        raise Unauthorized("Invalid credentials in Authorization header")
    user, _token = ratelimit.authenticate_token(limiter, session, token, ratelimit.peer_of(request))
    # End the write (last-used time) now: SQLite allows one writer, and the handler may open its own session.
    session.commit()
    return user


def require_user(user: User | None = Depends(optional_user)) -> User:
    if user is None:
        raise Unauthorized("this needs a token: send `Authorization: Bearer <token>`")
    return user


def limiter(platform: Platform = Depends(get_platform)) -> ratelimit.RateLimiter:
    return ratelimit.limiter_of(platform)
