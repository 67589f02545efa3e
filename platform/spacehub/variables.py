"""A space's variables and secrets: one API for the Hub API, the web UI and repo creation.

A secret is sealed before it is stored (the database never holds its value) and its value never leaves the
platform but for its app. A key is a variable or a secret, never both. A running app restarts to see a change.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import builds, crypto
from spacehub.context import Platform
from spacehub.errors import Conflict, InvalidInput, NotFound
from spacehub.store.models import Space, SpaceVariable


def rows(session: Session, space: Space, *, secret: bool) -> list[SpaceVariable]:
    """A space's variables, or its secrets (sealed values), by key."""
    return list(session.scalars(select(SpaceVariable).where(SpaceVariable.space_id == space.id,
                                                            SpaceVariable.secret.is_(secret))
                                .order_by(SpaceVariable.key)))


def put(platform: Platform, session: Session, space: Space, key: str, value: str, description: str = "",
        *, secret: bool) -> None:
    """Set a variable, or a secret; a running app restarts with it."""
    if not key or not key.replace("_", "").isalnum() or key[0].isdigit():
        raise InvalidInput(f"variable name {key!r} must be letters, digits and '_', not starting with a digit")
    existing = session.scalar(select(SpaceVariable).where(SpaceVariable.space_id == space.id,
                                                          SpaceVariable.key == key))
    if existing is not None and existing.secret != secret:
        kind = "secret" if existing.secret else "variable"
        raise Conflict(f"{key!r} is already a {kind} of {space.repo_id}: delete it first", code="VariableExists")
    if secret:
        value = crypto.seal_value(crypto.load_box(platform.settings), space.id, key, value)
    if existing is None:
        session.add(SpaceVariable(space_id=space.id, key=key, value=value, description=description, secret=secret))
    else:
        existing.value, existing.description = value, description
    session.flush()
    builds.restart_if_running(platform, session, space)


def delete(platform: Platform, session: Session, space: Space, key: str, *, secret: bool) -> None:
    row = session.scalar(select(SpaceVariable).where(SpaceVariable.space_id == space.id, SpaceVariable.key == key,
                                                     SpaceVariable.secret.is_(secret)))
    if row is None:
        raise NotFound(f"{space.repo_id} has no {'secret' if secret else 'variable'} named {key!r}",
                       code="VariableNotFound")
    session.delete(row)
    session.flush()
    builds.restart_if_running(platform, session, space)
