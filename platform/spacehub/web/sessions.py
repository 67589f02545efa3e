"""Browser sessions and CSRF: one ASGI middleware in front of the whole app (UI and API alike).

The cookie (`spacehub_session`: host-only, HttpOnly, SameSite=Lax) carries a signed random session id. A
signed-in session also has a record in Redis (id hash -> user id, expiring with the session), so signing out
really ends it. Anonymous visitors get an unrecorded id when a page shows them a form, so sign-in and sign-up
are CSRF-protected too.

CSRF: the token is an HMAC of the session id. Every unsafe request that a browser could send with our cookie
(a cookie session is present, or the body is a form) must carry it, in the `X-CSRF-Token` header or in a
urlencoded form's `csrf_token` field; otherwise 403 and nothing runs. Requests that authenticate with a Bearer
token carry no ambient credentials and are left alone (the Hub clients, the CLI): "carries a Bearer token" is
`accounts.bearer_credential`, the definition authentication uses too, so a request the CSRF check lets through
as a Bearer request is never authenticated by its cookie. The proxy strips this cookie from every request it
sends to a space.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import redis
import redis.asyncio as aioredis
from itsdangerous import BadSignature, URLSafeTimedSerializer

from spacehub.accounts import SESSION_COOKIE, bearer_credential
from spacehub.settings import Settings

CSRF_HEADER = b"x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FORM_BYTES = 1024 * 1024  # urlencoded UI forms are small; files go as multipart with the header

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class WebSession:
    """One browser's session, as the request handlers see it (`request.state.web_session`)."""

    sid: str
    user_id: int | None
    csrf_secret: bytes = field(repr=False)
    recorded: bool = False  # the browser already holds a cookie for this sid
    send_cookie: bool = False  # the response must (re)send the cookie

    @property
    def csrf_token(self) -> str:
        # A page that shows a form needs the browser to hold the session the token belongs to.
        if not self.recorded:
            self.send_cookie = True
        return csrf_token_for(self.csrf_secret, self.sid)


def csrf_token_for(secret: bytes, sid: str) -> str:
    return hmac.new(secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()


def _record_key(sid: str) -> str:
    return "spacehub:websession:" + hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    def __init__(self, settings: Settings, secret: bytes) -> None:
        self.settings = settings
        self.secret = secret
        self.serializer = URLSafeTimedSerializer(secret, salt="spacehub.session")
        self.secure = settings.base_url.startswith("https://")

    def anonymous(self) -> WebSession:
        return WebSession(sid=secrets.token_urlsafe(32), user_id=None, csrf_secret=self.secret)

    def sid_of(self, cookie_value: str) -> str | None:
        try:
            payload = self.serializer.loads(cookie_value, max_age=self.settings.session_max_age_s)
        except BadSignature:
            return None
        sid = payload.get("sid") if isinstance(payload, dict) else None
        return sid if isinstance(sid, str) else None

    async def load(self, conn: aioredis.Redis, cookie_value: str) -> WebSession | None:
        sid = self.sid_of(cookie_value)
        if sid is None:
            return None
        raw = await conn.get(_record_key(sid))
        user_id = json.loads(raw)["user_id"] if raw else None
        return WebSession(sid=sid, user_id=user_id, csrf_secret=self.secret, recorded=True)

    def sign_in(self, conn: redis.Redis, session: WebSession, user_id: int) -> None:
        """A fresh session id on every sign-in (an id planted before sign-in is worth nothing after it)."""
        if session.recorded:
            conn.delete(_record_key(session.sid))
        session.sid = secrets.token_urlsafe(32)
        session.user_id = user_id
        conn.set(_record_key(session.sid), json.dumps({"user_id": user_id}), ex=self.settings.session_max_age_s)
        session.recorded, session.send_cookie = False, True

    def sign_out(self, conn: redis.Redis, session: WebSession) -> None:
        conn.delete(_record_key(session.sid))
        session.sid, session.user_id = secrets.token_urlsafe(32), None
        session.recorded, session.send_cookie = False, True

    def cookie_header(self, session: WebSession) -> bytes:
        value = self.serializer.dumps({"sid": session.sid})
        parts = [f"{SESSION_COOKIE}={value}", "Path=/", "HttpOnly", "SameSite=Lax",
                 f"Max-Age={self.settings.session_max_age_s}"]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts).encode()


def _cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                cookie_name, _, cookie_value = pair.strip().partition("=")
                if cookie_name == name:
                    return cookie_value
    return None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _has_bearer(headers: list[tuple[bytes, bytes]]) -> bool:
    return bearer_credential(_header(headers, b"authorization")) is not None


class SessionMiddleware:
    def __init__(self, app: ASGIApp, sessions: Sessions, redis_url: Callable[[], str]) -> None:
        self.app = app
        self.sessions = sessions
        self.redis_url = redis_url
        self._redis: aioredis.Redis | None = None

    def _conn(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(self.redis_url())
        return self._redis

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        cookie = _cookie(headers, SESSION_COOKIE)
        session = await self.sessions.load(self._conn(), cookie) if cookie else None
        had_session = session is not None
        if session is None:
            session = self.sessions.anonymous()
        state = scope.setdefault("state", {})
        state["web_session"] = session
        state["session_user_id"] = session.user_id  # requestdeps.optional_user falls back to it

        if scope["method"] in UNSAFE_METHODS and not _has_bearer(headers):
            content_type = (_header(headers, b"content-type") or b"").decode("latin-1").lower()
            if had_session or content_type.startswith(FORM_TYPES):
                verdict = await self._check_csrf(session, headers, content_type, receive)
                if isinstance(verdict, str):
                    await _refuse(scope, send, verdict)
                    return
                receive = verdict

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.send_cookie:
                message["headers"] = [*message.get("headers", []),
                                      (b"set-cookie", self.sessions.cookie_header(session))]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _check_csrf(self, session: WebSession, headers: list[tuple[bytes, bytes]], content_type: str,
                          receive: Receive) -> Receive | str:
        """The receive to go on with when the token is right, else why the request is refused."""
        expected = csrf_token_for(self.sessions.secret, session.sid)
        sent = _header(headers, CSRF_HEADER)
        if sent is not None:
            ok = hmac.compare_digest(sent.decode("latin-1"), expected)
            return receive if ok else "the CSRF token does not match this session: reload the page"
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return "a CSRF token is required: send it in the X-CSRF-Token header"
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return "the client went away"
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_FORM_BYTES:
                return "the form is too large"
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        token = (fields.get(CSRF_FIELD) or [""])[0]
        if not hmac.compare_digest(token, expected):
            return "this form has expired or did not come from this site: reload the page and try again"
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


async def _refuse(scope: Scope, send: Send, reason: str) -> None:
    accept = (_header(scope["headers"], b"accept") or b"").decode("latin-1")
    if "text/html" in accept:
        from spacehub.web.render import error_page_bytes  # the page look lives with the templates

        body, content_type = error_page_bytes(403, "Request refused", reason), b"text/html; charset=utf-8"
    else:
        body, content_type = json.dumps({"error": reason}).encode(), b"application/json"
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            (b"x-error-code", b"CSRFTokenInvalid")]})
    await send({"type": "http.response.body", "body": body})
