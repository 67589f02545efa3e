"""The web UI's pure logic: private-space tokens, CSRF tokens, session cookies, cards, API snippets, policies."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from spacehub.edge.spaceauth import SpaceAccess
from spacehub.errors import InvalidInput
from spacehub.secret import load_secret
from spacehub.settings import load_settings
from spacehub.web import check_signup_policy
from spacehub.web.accounts import _safe_next
from spacehub.web.events import _positions
from spacehub.web.gradio_info import build_snippets, endpoints_of
from spacehub.web.render import CARD_COLORS, card_of, stage_look, timeago
from spacehub.web.sessions import Sessions, csrf_token_for

SECRET = b"0123456789abcdef0123456789abcdef0123456789abcdef"


def settings(tmp_path: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    return load_settings(data_dir=tmp_path, **overrides)


def cookie_headers(set_cookie: str) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", set_cookie.split(";", 1)[0].encode())]


# Private spaces: the iframe's signed token and the cookie it becomes


def test_a_sign_becomes_a_cookie_for_that_space_only(tmp_path):
    access = SpaceAccess(settings(tmp_path), SECRET)
    sign = access.sign(space_id=7, user_id=3)
    exchanged = access.exchange(7, f"/?__theme=dark&__sign={sign}".encode())
    assert exchanged is not None
    user_id, clean, set_cookie = exchanged
    assert user_id == 3
    assert clean == "/?__theme=dark"  # the token leaves the URL; the app's own parameters stay
    assert access.cookie_user(7, cookie_headers(set_cookie)) == 3
    assert access.cookie_user(8, cookie_headers(set_cookie)) is None  # another space's host
    assert access.exchange(8, f"/?__sign={sign}".encode()) is None


def test_forged_or_foreign_tokens_are_worth_nothing(tmp_path):
    access = SpaceAccess(settings(tmp_path), SECRET)
    other = SpaceAccess(settings(tmp_path), b"another-secret-another-secret-another-secret")
    assert access.exchange(7, f"/?__sign={other.sign(7, 3)}".encode()) is None
    assert access.exchange(7, b"/?__sign=garbage") is None
    assert access.exchange(7, f"/?__sign={access.sign(7, 3)}&__sign={access.sign(7, 4)}".encode()) is None
    # A sign is not a cookie (different purpose, different salt), and a cookie is not a sign.
    assert access.cookie_user(7, [(b"cookie", f"spacehub_session={access.sign(7, 3)}".encode())]) is None


def test_space_cookie_attributes_work_in_an_iframe(tmp_path):
    local = SpaceAccess(settings(tmp_path), SECRET).cookie_header("v")
    assert "SameSite=None" in local and "Secure" in local and "HttpOnly" in local and "Partitioned" in local
    assert "Domain" not in local  # host-only: that one space's host
    plain = SpaceAccess(settings(tmp_path, spaces_domain="spaces.lan", public_url="http://hub.lan"), SECRET)
    assert "Secure" not in plain.cookie_header("v")  # refused over plain http outside *.localhost


# Sessions and CSRF


def test_csrf_tokens_belong_to_one_session():
    assert csrf_token_for(SECRET, "a") == csrf_token_for(SECRET, "a")
    assert csrf_token_for(SECRET, "a") != csrf_token_for(SECRET, "b")
    assert csrf_token_for(SECRET, "a") != csrf_token_for(b"x" * 48, "a")


def test_session_cookie_is_signed_host_only_httponly_lax(tmp_path):
    sessions = Sessions(settings(tmp_path), SECRET)
    session = sessions.anonymous()
    header = sessions.cookie_header(session).decode()
    assert header.startswith("spacehub_session=")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Domain" not in header
    value = header.split(";", 1)[0].split("=", 1)[1]
    assert sessions.sid_of(value) == session.sid
    assert sessions.sid_of(value[:-2] + "xx") is None
    assert Sessions(settings(tmp_path), b"y" * 48).sid_of(value) is None
    https = Sessions(settings(tmp_path, public_url="https://hub.example.com"), SECRET)
    assert "Secure" in https.cookie_header(session).decode()


def test_the_signing_secret_is_made_once_and_private(tmp_path):
    first = load_secret(settings(tmp_path))
    assert load_secret(settings(tmp_path)) == first
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


def test_sign_in_redirects_stay_on_this_site():
    assert _safe_next("/spaces/a/b") == "/spaces/a/b"
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)", "", None):
        assert _safe_next(target) == "/"


def test_open_sign_up_needs_the_docker_runtime(tmp_path):
    with pytest.raises(InvalidInput, match="SPACEHUB_RUNTIME=docker"):
        check_signup_policy(settings(tmp_path, signup="open", runtime="process"))
    with pytest.raises(InvalidInput):
        check_signup_policy(settings(tmp_path, signup="open", runtime="auto"))  # might fall back to processes
    check_signup_policy(settings(tmp_path, signup="open", runtime="docker"))
    check_signup_policy(settings(tmp_path, signup="admin", runtime="process"))


def test_a_stream_resumes_from_its_last_event_id():
    assert _positions("1700000000000-0/1700000000001-3") == ("1700000000000-0", "1700000000001-3")
    assert _positions(None) == (None, None)
    assert _positions("junk") == (None, None)


# Cards and stages


def space(**fields: Any) -> Any:
    base = {"key": "alice/hello", "name": "hello", "owner": "alice", "card_data": {}, "private": False,
            "label": "alice-hello", "sdk": "gradio", "repo_id": "alice/hello"}
    return SimpleNamespace(**{**base, **fields})


def test_cards_follow_the_front_matter():
    card = card_of(space(card_data={"title": "Hello", "emoji": "👋", "colorFrom": "blue", "colorTo": "purple",
                                    "short_description": "Greets you"}))
    assert (card.title, card.emoji, card.description) == ("Hello", "👋", "Greets you")
    assert card.gradient == f"linear-gradient(135deg, {CARD_COLORS['blue']}, {CARD_COLORS['purple']})"


def test_cards_without_front_matter_get_stable_defaults():
    first, again = card_of(space()), card_of(space())
    assert first.title == "hello" and first.emoji and first.emoji == again.emoji
    assert first.gradient == again.gradient
    assert card_of(space(card_data={"colorFrom": "not-a-colour"})).color_from in CARD_COLORS.values()


def test_every_stage_has_a_look():
    from spacehub.stages import Stage

    for stage in Stage:
        look = stage_look(stage)
        assert look.label and look.tone in {"ok", "busy", "start", "idle", "error"}
    assert stage_look("RUNNING_BUILDING").group == "app"  # the old revision keeps serving
    assert stage_look("BUILD_ERROR").group == "error"


def test_timeago():
    now = datetime(2025, 1, 10, 12, 0, 0)
    assert timeago(now - timedelta(seconds=20), now) == "just now"
    assert timeago(now - timedelta(minutes=1), now) == "1 minute ago"
    assert timeago(now - timedelta(hours=5), now) == "5 hours ago"
    assert timeago(now - timedelta(days=40), now) == "1 month ago"
    assert timeago(None, now) == "never"


# "Use via API"

INFO = {"named_endpoints": {"/greet": {
    "parameters": [{"label": "Name", "parameter_name": "name", "parameter_has_default": False,
                    "python_type": {"type": "str"}, "example_input": "Hello!!"}],
    "returns": [{"label": "Greeting", "python_type": {"type": "str"}}]}}, "unnamed_endpoints": {}}


def test_snippets_carry_the_real_url_and_endpoint(tmp_path):
    snippets = build_snippets(settings(tmp_path, port=8000), space(), INFO)
    assert [e.api_name for e in endpoints_of(INFO)] == ["/greet"]
    (name, python), = snippets.python
    assert name == "/greet"
    assert "Client('http://alice-hello.space.localhost:8000')" in python
    assert "name='Hello!!'" in python and "api_name='/greet'" in python
    (_, curl), = snippets.curl
    assert "http://alice-hello.space.localhost:8000/gradio_api/call/greet" in curl
    assert "get_space_runtime('alice/hello')" in snippets.hub
    assert "Authorization" not in curl


def test_private_snippets_carry_a_token_and_quotes_are_safe(tmp_path):
    info = {"named_endpoints": {"/say": {"parameters": [{"parameter_name": "text", "example_input": "it's"}],
                                         "returns": []}}}
    snippets = build_snippets(settings(tmp_path), space(private=True), info)
    assert "token='<your token>'" in snippets.python[0][1]
    curl = snippets.curl[0][1]
    assert "Authorization: Bearer $TOKEN" in curl
    assert "it'\\''s" in curl  # a quote in the example cannot end the shell's single-quoted data


def test_no_info_means_no_endpoints_but_still_the_hub_snippet(tmp_path):
    snippets = build_snippets(settings(tmp_path), space(), None)
    assert snippets.endpoints == [] and snippets.note and snippets.hub
