"""API tokens over the API: list, create (optionally expiring), revoke. What the tokens page does, for scripts.

A token never mints a stronger one: a token-authenticated caller gets tokens that expire no later than its own
and, from a read token, read tokens only (a signed-in browser session, which expires on its own, has no bound).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import accounts
from spacehub.api.serialize import hub_time
from spacehub.errors import Forbidden
from spacehub.requestdeps import SESSION, bearer_token, require_user
from spacehub.store.models import Token, User, utcnow

router = APIRouter()


class NewTokenBody(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["read", "write"] = "write"
    expires: str | None = Field(default=None, max_length=20, description="e.g. 30d, 12h, 90m, 2w, 1y")


def token_json(token: Token) -> dict[str, Any]:
    return {"id": token.id, "name": token.name, "role": token.role, "prefix": token.prefix,
            "createdAt": hub_time(token.created_at), "lastUsedAt": hub_time(token.last_used_at),
            "expiresAt": hub_time(token.expires_at), "expired": accounts.is_expired(token)}


@router.get("/api/tokens")
def list_tokens(session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    rows = session.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.created_at.desc()))
    return JSONResponse([token_json(token) for token in rows])


@router.post("/api/tokens")
def create_token(body: NewTokenBody, request: Request, session: Session = SESSION,
                 user: User = Depends(require_user)) -> JSONResponse:
    lifetime = accounts.parse_lifetime(body.expires) if body.expires is not None else None
    caller = _calling_token(request, session)
    if caller is not None:
        if caller.role == "read" and body.role != "read":
            raise Forbidden("a read token creates read tokens only")
        if caller.expires_at is not None:
            left = caller.expires_at - utcnow()
            if lifetime is None or lifetime > left:
                raise Forbidden(f"this token expires at {hub_time(caller.expires_at)}: the tokens it creates must "
                                "expire no later (ask for a shorter `expires`)")
    new = accounts.create_token(session, user, body.name.strip(), role=body.role, expires_in=lifetime)
    session.commit()
    return JSONResponse({**token_json(new.token), "token": new.secret})  # shown once


@router.delete("/api/tokens/{token_id}")
def revoke_token(token_id: int, session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    accounts.revoke_token(session, user, token_id)
    session.commit()
    return JSONResponse({})


def _calling_token(request: Request, session: Session) -> Token | None:
    secret = bearer_token(request)
    if secret is None:
        return None
    _user, token = accounts.authenticate_token(session, secret)
    return token
