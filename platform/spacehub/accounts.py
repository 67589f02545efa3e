"""Users, organizations, memberships and API tokens.

Tokens look like `sh_<random>`; only an 8-character lookup prefix and a SHA-256 of the whole secret are stored.
(A fast hash is right for 256-bit random secrets; passwords, which are guessable, use argon2.)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub.errors import Conflict, InvalidInput, NotFound, Unauthorized
from spacehub.names import check_owner
from spacehub.store.models import Membership, Organization, Token, User, utcnow

TOKEN_PREFIX = "sh_"
# The web UI's session cookie (and the cookie a private space's host gets, spacehub.edge.spaceauth): like a token,
# the proxy strips it before a request reaches an app.
SESSION_COOKIE = "spacehub_session"
_passwords = PasswordHasher()
# RFC 6750's b64token: what a Bearer credential may be made of (every spacehub token is one).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def bearer_credential(authorization: str | bytes | None) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None: the request carries no Bearer token.

    The one definition that authentication and the CSRF check share. A request that carries one is
    authenticated by that token alone (never by a cookie beside it) and so needs no CSRF token; one that does
    not (no header, another scheme, a blank or malformed value) is a cookie request like any other.
    """
    if not authorization:
        return None
    value = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
    scheme, _, credential = value.strip(" \t").partition(" ")
    credential = credential.strip(" \t")
    if scheme.lower() != "bearer" or not _B64TOKEN.fullmatch(credential):
        return None
    return credential


@dataclass(frozen=True)
class NewToken:
    token: Token
    secret: str  # shown once, never stored


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _name_taken(session: Session, name: str) -> bool:
    key = name.lower()
    return bool(
        session.scalar(select(User.id).where(User.name_key == key))
        or session.scalar(select(Organization.id).where(Organization.name_key == key))
    )


def create_user(session: Session, name: str, *, admin: bool = False, password: str | None = None) -> User:
    check_owner(name)
    if _name_taken(session, name):
        raise Conflict(f"the name {name!r} is already taken by a user or organization")
    user = User(name=name, name_key=name.lower(), is_admin=admin)
    if password is not None:
        user.password_hash = _passwords.hash(password)
    session.add(user)
    session.flush()
    return user


def create_org(session: Session, name: str, members: list[str] | tuple[str, ...] = ()) -> Organization:
    check_owner(name)
    if _name_taken(session, name):
        raise Conflict(f"the name {name!r} is already taken by a user or organization")
    org = Organization(name=name, name_key=name.lower())
    session.add(org)
    session.flush()
    for member in members:
        add_member(session, org, get_user(session, member), role="admin")
    return org


def add_member(session: Session, org: Organization, user: User, role: str = "write") -> Membership:
    existing = session.scalar(select(Membership).where(Membership.org_id == org.id, Membership.user_id == user.id))
    if existing:
        existing.role = role
        return existing
    membership = Membership(org=org, user=user, role=role)
    session.add(membership)
    session.flush()
    return membership


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name_key == name.lower()))
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


def find_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name_key == name.lower()))


def get_org(session: Session, name: str) -> Organization:
    org = session.scalar(select(Organization).where(Organization.name_key == name.lower()))
    if org is None:
        raise NotFound(f"no organization named {name!r}")
    return org


def user_orgs(session: Session, user: User) -> list[Organization]:
    return list(session.scalars(
        select(Organization).join(Membership).where(Membership.user_id == user.id).order_by(Organization.name)
    ))


def owner_exists(session: Session, name: str) -> bool:
    return _name_taken(session, name)


def can_write(session: Session, user: User | None, owner: str) -> bool:
    """May `user` create or change repos in namespace `owner` (their own, or an org they belong to)?"""
    if user is None:
        return False
    if user.is_admin or user.name_key == owner.lower():
        return True
    return any(org.name_key == owner.lower() for org in user_orgs(session, user))


_DURATION = re.compile(r"(\d{1,6})\s*([mhdwy])")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1),
          "y": timedelta(days=365)}
MAX_TOKEN_LIFETIME = timedelta(days=10 * 365)


def parse_lifetime(text: str) -> timedelta:
    """A token lifetime such as `30d`, `12h`, `90m`, `2w` or `1y` (minutes, hours, days, weeks, years)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(f"token lifetime {text!r}: write a number and a unit, e.g. 30d, 12h, 90m, 2w or 1y")
    lifetime = int(match.group(1)) * _UNITS[match.group(2)]
    if lifetime > MAX_TOKEN_LIFETIME:
        raise InvalidInput(f"token lifetime {text!r}: at most 10 years (or no expiry at all)")
    return lifetime


def create_token(session: Session, user: User, name: str, role: str = "write",
                 secret: str | None = None, expires_in: timedelta | None = None) -> NewToken:
    """A new token; with `expires_in`, every use after that long is refused (as an invalid token)."""
    secret = secret or TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + expires_in if expires_in is not None else None
    token = Token(user=user, name=name, prefix=secret[:8], secret_hash=_hash_secret(secret), role=role,
                  expires_at=expires_at)
    session.add(token)
    session.flush()
    return NewToken(token=token, secret=secret)


def is_expired(token: Token, now: datetime | None = None) -> bool:
    return token.expires_at is not None and token.expires_at <= (now or utcnow())


def authenticate_token(session: Session, secret: str) -> tuple[User, Token]:
    digest = _hash_secret(secret)
    for token in session.scalars(select(Token).where(Token.prefix == secret[:8])):
        if hmac.compare_digest(token.secret_hash, digest):
            now = utcnow()
            if is_expired(token, now):
                raise Unauthorized(f"the token {token.name!r} expired on {token.expires_at:%Y-%m-%d %H:%M} UTC",
                                   code="TokenExpired")
            if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
                token.last_used_at = now  # at most a write a minute per token
            return token.user, token
    raise Unauthorized("Invalid credentials in Authorization header")


def revoke_token(session: Session, user: User, token_id: int) -> None:
    token = session.get(Token, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound("no such token")
    session.delete(token)


def set_password(user: User, password: str) -> None:
    user.password_hash = _passwords.hash(password)


def check_password(session: Session, name: str, password: str) -> User:
    user = find_user(session, name)
    if user is None or not user.password_hash:
        _passwords.hash(password)  # spend the same time whether or not the user exists
        raise Unauthorized("wrong username or password")
    try:
        _passwords.verify(user.password_hash, password)
    except VerificationError:
        raise Unauthorized("wrong username or password") from None
    return user


def ensure_admin(session: Session, admin_token: str) -> None:
    """First start with SPACEHUB_ADMIN_TOKEN: user `admin` owning that token, so scripts can drive a fresh install."""
    user = find_user(session, "admin")
    if user is None:
        user = User(name="admin", name_key="admin", is_admin=True)  # reserved name: created directly
        session.add(user)
        session.flush()
    digest = _hash_secret(admin_token)
    if not session.scalar(select(Token.id).where(Token.secret_hash == digest)):
        create_token(session, user, "admin (SPACEHUB_ADMIN_TOKEN)", secret=admin_token)
