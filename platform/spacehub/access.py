"""Who may see and change a repository (space, model or dataset): the one read rule, for every entry point.

A private repo is as missing as one that does not exist, to anyone who may not read it. Reading a private repo
and writing any repo take the same right: writing to its owner's namespace (the user, or a member of the org).
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from spacehub import accounts
from spacehub.errors import Forbidden, RepoNotFound
from spacehub.store.models import Space, User


def space_key(owner: str, name: str) -> str:
    return f"{owner}/{name}".lower()


def repo_key(space: Space) -> str:
    """The key of the space's git repo in the RepoStore (spaces and models live side by side)."""
    prefix = "" if space.repo_type == "space" else f"{space.repo_type}s/"
    return f"{prefix}{space.owner}/{space.name}"


def find_space(session: Session, owner: str, name: str, repo_type: str = "space") -> Space | None:
    return session.scalar(select(Space).where(Space.key == space_key(owner, name), Space.repo_type == repo_type))


def can_read(session: Session, user: User | None, space: Space) -> bool:
    return not space.private or accounts.can_write(session, user, space.owner)


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
    namespaces = [user.name_key] + [o.name_key for o in accounts.user_orgs(session, user)] if user else []
    if not (user and user.is_admin):
        query = query.where(or_(Space.private.is_(False), func.lower(Space.owner).in_(namespaces)))
    order = Space.created_at if sort == "createdAt" else Space.updated_at
    query = query.order_by(order.desc(), Space.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
