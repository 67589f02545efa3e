"""/docs works offline: Swagger UI's assets come from spacehub itself, the page draws the API's operations, no
request leaves the install, and the schema has one operation id per operation."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
from browserkit import Offsite, shot
from playwright.sync_api import expect

from support.server import Server

pytestmark = pytest.mark.browser


def test_docs_page_draws_from_the_install_alone(server: Server, open_context) -> None:
    context = open_context()
    offsite = Offsite(context, "localhost", "space.localhost")
    page = context.new_page()
    page.goto("/docs")
    expect(page.locator(".opblock-summary-path", has_text="/api/whoami-v2").first).to_be_visible()
    shot(page, "api-docs")
    assert offsite.requests == []
    assert offsite.errors == []


def test_operation_ids_are_unique(server: Server) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns "Duplicate Operation ID" while it builds the schema
        schema = server.api.get("/openapi.json").json()
    ids = Counter(operation["operationId"] for path in schema["paths"].values() for operation in path.values())
    assert ids and [name for name, count in ids.items() if count > 1] == []
    assert "Duplicate Operation ID" not in server.log.read_text()
