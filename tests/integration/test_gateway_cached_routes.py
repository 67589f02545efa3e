"""`SpaceResolver.resolve_cached`: the proxy's synchronous route lookup answers from the in-memory tables, agrees
with the full (async) resolver, and leaves everything that needs more (private spaces, unknown labels) to it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacehub.edge.gateway import SpaceEntry, SpaceResolver, pin_value
from spacehub.proxy import Route, Upstream
from spacehub.settings import Settings
from spacehub.stages import Stage
from spacehub.store.db import Database

RUNNING = str(Stage.RUNNING)


@pytest.fixture
def resolver(tmp_path: Path) -> Iterator[SpaceResolver]:
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.effective_database_url)
    resolver = SpaceResolver(settings, db, redis_url="redis://unused")
    resolver.spaces = {
        "alice-demo": SpaceEntry(1, "alice/demo", RUNNING, False, "", "alice"),
        "alice-secret": SpaceEntry(2, "alice/secret", RUNNING, True, "", "alice"),
        "alice-building": SpaceEntry(3, "alice/building", str(Stage.BUILDING), False, "", "alice"),
    }
    resolver.routes = {"alice-demo": "127.0.0.1:7861", "alice-secret": "127.0.0.1:7862"}
    yield resolver
    db.engine.dispose()


def test_a_public_space_with_a_route_is_answered_at_once(resolver: SpaceResolver) -> None:
    route = resolver.resolve_cached("alice-demo.space.localhost", [])
    assert route == Route(Upstream("127.0.0.1", 7861), space_id=1, is_space=True)
    assert resolver.resolve_cached("alice-demo.space.localhost", []) is route  # built once, then looked up
    assert asyncio.run(resolver("alice-demo.space.localhost", [])) == route


def test_the_platform_hosts_go_to_the_api(resolver: SpaceResolver) -> None:
    route = resolver.resolve_cached("localhost", [])
    assert route is not None and route.upstream == resolver.api and not route.is_space


def test_a_redeployed_space_gets_its_new_upstream(resolver: SpaceResolver) -> None:
    first = resolver.resolve_cached("alice-demo.space.localhost", [])
    resolver.routes = {**resolver.routes, "alice-demo": "127.0.0.1:7999"}
    second = resolver.resolve_cached("alice-demo.space.localhost", [])
    assert first is not None and second is not None
    assert second.upstream == Upstream("127.0.0.1", 7999) and second.space_id == 1


@pytest.mark.parametrize(
    "host",
    [
        "alice-secret.space.localhost",  # private: the gate decides, with a database lookup
        "alice-building.space.localhost",  # no route: the async call answers why
        "nobody-here.space.localhost",  # unknown: maybe created a moment ago
        "evil.example",  # not ours: the async call answers 421
    ],
)
def test_what_needs_more_than_the_tables_is_left_to_the_async_call(resolver: SpaceResolver, host: str) -> None:
    assert resolver.resolve_cached(host, []) is None


def test_a_gradio_space_pins_only_clients_that_lack_the_pin(resolver: SpaceResolver) -> None:
    # The pin cookie is added to answers for clients that do not send its value back; those that do get the
    # app's answer with nothing added (so it can pass on unchanged).
    resolver.spaces = {**resolver.spaces, "alice-chat": SpaceEntry(4, "alice/chat", RUNNING, False, "", "alice",
                                                                    sdk="gradio")}
    resolver.routes = {**resolver.routes, "alice-chat": "127.0.0.1:7870"}
    route = resolver.resolve_cached("alice-chat.space.localhost", [])
    assert route is not None
    value = pin_value(4, "127.0.0.1:7870").encode()
    assert b"spacehub-rev=" + value in route.added_for(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert route.added_for(b"GET / HTTP/1.1\r\nCookie: spacehub-rev=" + value + b"\r\n\r\n") == b""
    assert route.added_for(b"GET / HTTP/1.1\r\nCookie: spacehub-rev-framed=" + value + b"\r\n\r\n") == b""
    assert route.added_for(b"GET / HTTP/1.1\r\nCookie: spacehub-rev=0123456789abcdef0123\r\n\r\n") != b""
    plain = resolver.resolve_cached("alice-demo.space.localhost", [])
    assert plain is not None and plain.added_for(b"GET / HTTP/1.1\r\n\r\n") == b""  # not Gradio: no pin at all
