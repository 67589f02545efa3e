"""The FastAPI application factory. Served on an internal unix socket; the public port is the proxy's."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from spacehub import __version__, web
from spacehub.api import (
    errors,
    git,
    hub_commits,
    hub_files,
    hub_lfs,
    hub_repos,
    hub_runtime,
    identity,
    logs,
    spaces,
    tokens,
)
from spacehub.context import Platform
from spacehub.health import run_checks


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(title="spacehub", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.platform = platform
    errors.install(app)
    app.include_router(identity.router)
    app.include_router(tokens.router)
    app.include_router(spaces.router)
    # The Hub API (issue 4): repos, runtime settings, uploads, files and downloads (`/{owner}/{name}/resolve/`).
    app.include_router(hub_repos.router)
    app.include_router(hub_runtime.router)
    app.include_router(hub_commits.router)
    app.include_router(hub_files.router)
    app.include_router(hub_lfs.router)
    app.include_router(logs.router)
    app.include_router(git.router)  # last: its model-repo paths (/{owner}/{name}/info/refs) are the widest

    @app.get("/health")
    def health() -> JSONResponse:
        """200 when every dependency works; else 503 naming each one that does not (and Retry-After)."""
        checks = run_checks(platform.settings, platform.db, lambda: platform.redis)
        failed = [check for check in checks if not check.ok]
        body: dict[str, object] = {
            "status": "unavailable" if failed else "ok", "version": __version__,
            "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in checks}}
        if not failed:
            return JSONResponse(body)
        body["error"] = "; ".join(f"{check.name}: {check.detail}" for check in failed)
        return JSONResponse(body, status_code=503, headers={
            "Retry-After": str(platform.settings.retry_after_s), "X-Error-Code": "ServiceUnavailable"})

    # The web UI (issue 5) goes last: its owner pages (`/{owner}`) match any single-segment path.
    web.install(app, platform)
    return app
