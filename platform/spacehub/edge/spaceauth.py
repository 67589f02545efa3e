"""Letting a private space's owner into its app from the browser.

The platform's cookies never reach a space's host (another site: `space.localhost` apart from `localhost`,
`hf.space` apart from `huggingface.co`). So the space page puts a short-lived signed token in the iframe's URL
(`?__sign=...`); the proxy checks it and answers with a redirect to the same URL without it, setting a cookie
scoped to that one space's host. That cookie is named like the platform's session cookie, so the proxy's
existing rule strips it before any request reaches the app. In an iframe the cookie is third-party: it needs
`SameSite=None; Secure` (browsers accept Secure cookies over plain http on `*.localhost`) and is
`Partitioned`, so browsers that block third-party cookies keep it for this embedding too.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qsl, urlencode

from itsdangerous import BadSignature, URLSafeTimedSerializer

from spacehub.accounts import SESSION_COOKIE
from spacehub.settings import Settings

SIGN_PARAM = "__sign"


class SpaceAccess:
    def __init__(self, settings: Settings, secret: bytes) -> None:
        self.settings = settings
        self._signs = URLSafeTimedSerializer(secret, salt="spacehub.space-sign")
        self._cookies = URLSafeTimedSerializer(secret, salt="spacehub.space-cookie")

    def sign(self, space_id: int, user_id: int) -> str:
        """The token for an iframe URL: minted only for a user who may read the space."""
        return self._signs.dumps({"s": space_id, "u": user_id})

    def signed_url(self, base_url: str, space_id: int, user_id: int) -> str:
        return f"{base_url}/?{urlencode({SIGN_PARAM: self.sign(space_id, user_id)})}"

    def _user(self, serializer: URLSafeTimedSerializer, value: str, space_id: int, max_age: float) -> int | None:
        try:
            payload = serializer.loads(value, max_age=math.ceil(max_age))
        except BadSignature:
            return None
        if not isinstance(payload, dict) or payload.get("s") != space_id or not isinstance(payload.get("u"), int):
            return None
        return int(payload["u"])

    def exchange(self, space_id: int, target: bytes) -> tuple[int, str, str] | None:
        """For a request target carrying a valid sign: (user id, the target without it, a Set-Cookie value)."""
        path, _, query = target.decode("latin-1").partition("?")
        pairs = parse_qsl(query, keep_blank_values=True)
        signs = [value for key, value in pairs if key == SIGN_PARAM]
        if len(signs) != 1:
            return None
        user_id = self._user(self._signs, signs[0], space_id, self.settings.space_sign_ttl_s)
        if user_id is None:
            return None
        rest = urlencode([(key, value) for key, value in pairs if key != SIGN_PARAM])
        clean = path + (f"?{rest}" if rest else "")
        return user_id, clean, self.cookie_header(self._cookies.dumps({"s": space_id, "u": user_id}))

    def cookie_user(self, space_id: int, headers: list[tuple[bytes, bytes]]) -> int | None:
        """The user a request's space cookie stands for, if it is valid for this space."""
        for name, value in headers:
            if name.lower() != b"cookie":
                continue
            for pair in value.decode("latin-1").split(";"):
                cookie_name, _, cookie_value = pair.strip().partition("=")
                if cookie_name == SESSION_COOKIE:
                    user_id = self._user(self._cookies, cookie_value, space_id,
                                         self.settings.space_cookie_max_age_s)
                    if user_id is not None:
                        return user_id
        return None

    def cookie_header(self, value: str) -> str:
        parts = [f"{SESSION_COOKIE}={value}", "Path=/", "HttpOnly", f"Max-Age={self.settings.space_cookie_max_age_s}"]
        if self.settings.spaces_scheme == "https" or self.settings.spaces_domain.endswith("localhost"):
            parts += ["Secure", "SameSite=None", "Partitioned"]  # sent inside the platform's iframe
        else:
            parts.append("SameSite=Lax")  # plain http elsewhere: Secure cookies are refused; direct visits only
        return "; ".join(parts)
