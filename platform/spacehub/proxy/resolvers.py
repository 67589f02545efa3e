"""What a resolver (`routing.Resolver`) may offer besides its call: each ability a small Protocol that the proxy
checks once, when it is given the resolver (`ProxyServer.__init__`).

Not compiled (setup.py): runtime-checkable Protocols must stay Python classes for `isinstance` to work on them,
so the checks are made here too, by the functions at the end.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .routing import Route


@runtime_checkable
class TargetResolver(Protocol):
    """Optional: a resolver with a true `accepts_target` is called with the request target too, as the keyword
    `target` (bytes, e.g. b"/path?query"): e.g. to exchange a signed query token for a cookie."""

    accepts_target: bool

    async def __call__(self, host: str, headers: list[tuple[bytes, bytes]], *, target: bytes) -> Route: ...


@runtime_checkable
class CachedResolver(Protocol):
    """Optional fast path, which the proxy calls first for every request: it answers from memory what it can
    (e.g. a public space's route) and returns None for anything that needs more (a database lookup, a credential
    check, the request target), and the proxy then awaits the resolver's call. A route known at once lets a
    request without a body be served with no task at all."""

    def resolve_cached(self, host: str, headers: list[tuple[bytes, bytes]]) -> Route | None: ...


@runtime_checkable
class VersionedRoutes(Protocol):
    """Optional, with `CachedResolver`: a promise that the routes `resolve_cached` returns depend on the Host value
    alone and hold until `routes_version` changes, so the proxy remembers them per raw Host header value and asks
    again only for a Host it has not seen since the last change."""

    routes_version: int


def target_resolver(resolver: object) -> TargetResolver | None:
    return resolver if isinstance(resolver, TargetResolver) and resolver.accepts_target else None


def cached_resolver(resolver: object) -> CachedResolver | None:
    return resolver if isinstance(resolver, CachedResolver) else None


def versioned_routes(resolver: object) -> VersionedRoutes | None:
    return resolver if isinstance(resolver, VersionedRoutes) else None
