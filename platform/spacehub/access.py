"""Who may see and change a repository (space, model or dataset): the one read rule, for every entry point.

A private repo is as missing as one that does not exist, to anyone who may not read it. Reading a private repo
and writing any repo take the same right: writing to its owner's namespace (the user, or a member of the org).
The rule is `Reader.may_read`: the API and the web UI ask it through `can_read`, lists through `list_visible`
(the same rule as a query), and the proxy's gate caches Readers (`spacehub.edge.spacegate`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from spacehub import accounts
from spacehub.errors import Forbidden, RepoNotFound
from spacehub.store.models import Space, User


@dataclass(frozen=True)
class Reader:
    """Who asks, as the read rule needs it: a snapshot the proxy may cache for a few seconds."""

    user_id: int
    is_admin: bool
    namespaces: frozenset[str]  # lower-cased: the user's own name and those of their organizations

    def may_read(self, owner: str) -> bool:
        """May this user read the private repos of `owner`?"""
        return self.is_admin or owner.lower() in self.namespaces


def reader_of(session: Session, user: User) -> Reader:
    orgs = accounts.user_orgs(session, user)
    return Reader(user_id=user.id, is_admin=user.is_admin,
                  namespaces=frozenset({user.name_key, *(org.name_key for org in orgs)}))


def space_key(owner: str, name: str) -> str:
    return f"{owner}/{name}".lower()


def repo_key(space: Space) -> str:
    """The key of the space's git repo in the RepoStore (spaces and models live side by side)."""
    prefix = "" if space.repo_type == "space" else f"{space.repo_type}s/"
    return f"{prefix}{space.owner}/{space.name}"


def find_space(session: Session, owner: str, name: str, repo_type: str = "space") -> Space | None:
    return session.scalar(select(Space).where(Space.key == space_key(owner, name), Space.repo_type == repo_type))


def can_read(session: Session, user: User | None, space: Space) -> bool:
    return not space.private or (user is not None and reader_of(session, user).may_read(space.owner))


def get_visible(session: Session, user: User | None, owner: str, name: str, repo_type: str = "space") -> Space:
    """The space, if `user` may see it; a private space is as missing as a space that does not exist."""
    space = find_space(session, owner, name, repo_type)
    if space is None or not can_read(session, user, space):
        raise RepoNotFound(f"Repository Not Found for {repo_type} '{owner}/{name}'")
    return space


def get_writable(session: Session, user: User | None, owner: str, name: str, repo_type: str = "space") -> Space:
    space = get_visible(session, user, owner, name, repo_type)
    if not accounts.can_write(session, user, space.owner):
        raise Forbidden(f"you cannot change {repo_type} '{space.repo_id}'")
    return space


def list_visible(session: Session, user: User | None, *, author: str | None = None, search: str | None = None,
                 repo_type: str = "space", limit: int | None = None, offset: int = 0,
                 sort: str = "lastModified") -> list[Space]:
    """The repos `user` may see (the read rule above, as a query), newest first."""
    query = select(Space).where(Space.repo_type == repo_type)
    if author:
        query = query.where(func.lower(Space.owner) == author.lower())
    if search:
        query = query.where(Space.key.contains(search.lower()))
    reader = reader_of(session, user) if user is not None else None
    if not (reader and reader.is_admin):  # Reader.may_read, as a query
        namespaces = sorted(reader.namespaces) if reader else []
        query = query.where(or_(Space.private.is_(False), func.lower(Space.owner).in_(namespaces)))
    order = Space.created_at if sort == "createdAt" else Space.updated_at
    query = query.order_by(order.desc(), Space.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
