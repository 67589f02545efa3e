"""The FastAPI application factory. Served on an internal unix socket; the public port is the proxy's."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from spacehub import __version__
from spacehub.api import errors, identity, logs, spaces
from spacehub.context import Platform


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(title="spacehub", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.platform = platform
    errors.install(app)
    app.include_router(identity.router)
    app.include_router(spaces.router)
    app.include_router(logs.router)

    @app.get("/health")
    def health() -> JSONResponse:
        platform.redis.ping()
        return JSONResponse({"status": "ok", "version": __version__})

    return app
