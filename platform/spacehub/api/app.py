"""The HTTP API's part of the application: its routers, /health and /metrics, and the API's metrics.

The application itself is put together by `spacehub.app` (the API beside the web UI)."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest

from spacehub import __version__
from spacehub.api import (
    docs,
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
from spacehub.errors import Forbidden
from spacehub.health import run_checks
from spacehub.metrics import CONTENT_TYPE, ApiMetrics, PlatformCollector, new_registry
from spacehub.requestdeps import require_user
from spacehub.store.models import User


def install(app: FastAPI, platform: Platform, metrics: CollectorRegistry | None = None) -> None:
    """`metrics`: the process's registry, where the caller may have registered collectors of its own (the
    proxy's, under `spacehub serve`); the API adds its own and the platform's, and serves it at /metrics."""
    docs.install(app)
    registry = metrics if metrics is not None else new_registry()
    registry.register(PlatformCollector(platform.settings, platform.db, platform.redis))
    app.add_middleware(_Measured, metrics=ApiMetrics(registry))
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
            # Which database this platform uses (a random id of its own): how an admin command on a database
            # tells whether it is this platform's (spacehub.cli.admin).
            "installation": platform.db.installation_id() if not failed else None,
            "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in checks}}
        if not failed:
            return JSONResponse(body)
        body["error"] = "; ".join(f"{check.name}: {check.detail}" for check in failed)
        return JSONResponse(body, status_code=503, headers={
            "Retry-After": str(platform.settings.retry_after_s), "X-Error-Code": "ServiceUnavailable"})

    @app.get("/metrics")
    def metrics_text(user: User = Depends(require_user)) -> Response:
        # Space names (private ones too) and load figures: for admins and the Prometheus they give a token to.
        if not user.is_admin:
            raise Forbidden("/metrics is for admins")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)


class _Measured:
    """ASGI middleware feeding `ApiMetrics` (as a class: Starlette's `add_middleware` wants one)."""

    def __init__(self, app: object, metrics: ApiMetrics) -> None:
        self.app = metrics.middleware(app)

    async def __call__(self, scope: dict[str, object], receive: object, send: object) -> None:
        await self.app(scope, receive, send)
