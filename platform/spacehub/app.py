"""The ASGI application of the control plane: the HTTP API and the web UI side by side in one FastAPI app.

The entry points (`spacehub serve`, the API role) build it here; neither `spacehub.api` nor `spacehub.web`
knows of the other. Both take their request dependencies from `spacehub.requestdeps` and answer errors through
`spacehub.httperrors`, installed once here for every route.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from spacehub import __version__, httperrors, web
from spacehub.api import app as api
from spacehub.context import Platform


def create_app(platform: Platform, metrics: CollectorRegistry | None = None) -> FastAPI:
    """`metrics`: the process's registry (see `spacehub.api.app.install`)."""
    app = FastAPI(title="spacehub", version=__version__, docs_url=None, redoc_url=None)
    app.state.platform = platform  # what `spacehub.requestdeps.get_platform` hands every request
    httperrors.install(app)
    api.install(app, platform, metrics)
    # The web UI goes last: its owner pages (`/{owner}`) match any single-segment path.
    web.install(app, platform)
    return app
