"""Who is calling: the Hub's whoami, plus small endpoints Hub clients call in the background."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from spacehub import accounts
from spacehub.requestdeps import SESSION, bearer_token, require_user
from spacehub.store.models import User

router = APIRouter()


@router.get("/api/whoami-v2")
def whoami(request: Request, session: Session = SESSION,
           user: User = Depends(require_user)) -> JSONResponse:
    token_name = "session"
    role = "write"
    secret = bearer_token(request)
    if secret:
        _user, token = accounts.authenticate_token(session, secret)
        token_name, role = token.name, token.role
    orgs = [{"type": "org", "id": str(o.id), "name": o.name, "fullname": o.fullname or o.name}
            for o in accounts.user_orgs(session, user)]
    return JSONResponse({
        "type": "user", "id": str(user.id), "name": user.name, "fullname": user.fullname or user.name,
        "email": user.email, "emailVerified": bool(user.email), "avatarUrl": "", "isPro": False,
        "canPay": False, "periodEnd": None, "isAdmin": user.is_admin, "orgs": orgs,
        "auth": {"type": "access_token", "accessToken": {"displayName": token_name, "role": role}},
    })


@router.get("/api/agent-harnesses")
def agent_harnesses() -> JSONResponse:
    return JSONResponse({"standardEnvVars": [], "harnesses": {}})


@router.post("/api/telemetry/{path:path}")
@router.api_route("/api/telemetry/{path:path}", methods=["HEAD", "GET"], include_in_schema=False)
def telemetry(path: str) -> Response:
    return Response(status_code=200)
