"""Owner and repo names (the Hub's rules) and each space's DNS label."""

from __future__ import annotations

import hashlib
import re

from spacehub.errors import InvalidName

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,96}$")

RESERVED_OWNERS = frozenset({
    "api", "spaces", "space", "models", "datasets", "docs", "static", "admin", "login", "logout", "signup",
    "settings", "new", "join", "explore", "search", "assets", "health", "organizations", "orgs", "users",
    "account", "auth", "oauth", "blog", "pricing", "www", "mail", "git", "resolve", "tree", "blob", "upload",
    "spacehub", "root", "system", "hub", "metrics", "status", "tokens", "404", "500",
})

MAX_LABEL = 63


def check_name(value: str, what: str = "name") -> str:
    """Return the name if it follows the Hub's rules, else raise InvalidName naming the broken rule."""
    if not isinstance(value, str) or not value:
        raise InvalidName(f"{what} must not be empty")
    if len(value) > 96:
        raise InvalidName(f"{what} {value!r} is longer than 96 characters")
    if not _NAME.match(value):
        raise InvalidName(f"{what} {value!r} may only contain letters, digits, '-', '_' and '.'")
    if "--" in value or ".." in value:
        raise InvalidName(f"{what} {value!r} must not contain '--' or '..'")
    if value[0] in "-." or value[-1] in "-.":
        raise InvalidName(f"{what} {value!r} must not start or end with '-' or '.'")
    if value.lower().endswith(".git"):
        raise InvalidName(f"{what} {value!r} must not end with '.git'")
    return value


def check_owner(value: str) -> str:
    check_name(value, "owner")
    if value.lower() in RESERVED_OWNERS:
        raise InvalidName(f"owner {value!r} is a reserved name")
    return value


def split_repo_id(repo_id: str) -> tuple[str, str]:
    owner, sep, name = repo_id.partition("/")
    if not sep or "/" in name:
        raise InvalidName(f"repository id {repo_id!r} must look like 'owner/name'")
    return check_owner(owner), check_name(name)


def plain_label(owner: str, name: str) -> str:
    """The label a space would get if nothing collided: lower-cased `owner-name`, `_` and `.` as `-`."""
    raw = f"{owner}-{name}".lower().replace("_", "-").replace(".", "-")
    return re.sub(r"-{2,}", "-", raw).strip("-")


def unique_label(owner: str, name: str, taken: set[str] | frozenset[str]) -> str:
    """A DNS label for the space: the plain one, or a hash-suffixed one if taken or over 63 characters."""
    plain = plain_label(owner, name)
    if plain not in taken and len(plain) <= MAX_LABEL:
        return plain
    digest = hashlib.sha256(f"{owner}/{name}".encode()).hexdigest()
    for size in (6, 10, 16, 64):
        suffix = digest[:size]
        label = f"{plain[: MAX_LABEL - len(suffix) - 1].rstrip('-')}-{suffix}"
        if label not in taken:
            return label
    raise InvalidName(f"no free DNS label for {owner}/{name}")
