"""The one place where errors become HTTP answers: `{"error": message}` plus `X-Error-Code` on every route.

Besides the platform's own errors, failures of what the platform depends on are named here too: Redis down is a
503 with `Retry-After` (the client tries again), a full disk is a 507 naming the data dir, and anything else is
a 500 that is still JSON, never a text page.
"""

from __future__ import annotations

import errno
import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from spacehub.errors import InsufficientStorage, ServiceUnavailable, SpacehubError
from spacehub.settings import Settings

log = logging.getLogger(__name__)

_STATUS_CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge", 422: "InvalidInput"}
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def error_response(status: int, message: str, code: str, extra: dict[str, object] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {"X-Error-Code": code, "X-Error-Message": message.encode("ascii", "replace").decode()[:500],
               **(headers or {})}
    return JSONResponse({"error": message, **(extra or {})}, status_code=status, headers=headers)


def platform_error(exc: BaseException, settings: Settings) -> SpacehubError | None:
    """What a failure of a dependency means to a client, or None when it is a bug (answered as a 500)."""
    if isinstance(exc, SpacehubError):
        return exc
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.BusyLoadingError):
        return ServiceUnavailable(f"Redis is unavailable ({exc}); try again shortly",
                                  retry_after_s=settings.retry_after_s)
    if is_disk_full(exc):
        return InsufficientStorage(f"the disk holding {settings.data_dir} is full: nothing can be written until "
                                   "space is freed there")
    if isinstance(exc, PoolTimeout):
        return ServiceUnavailable("the platform is busy: no database connection came free in time; try again "
                                  "shortly", retry_after_s=settings.retry_after_s)
    if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
        return ServiceUnavailable("the database is busy; try again shortly", retry_after_s=settings.retry_after_s)
    return None


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from a write, or SQLite's `database or disk is full` (SQLITE_FULL)."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return True
    if isinstance(exc, OperationalError):
        return "database or disk is full" in str(exc.orig) or "No space left on device" in str(exc.orig)
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _answer(error: SpacehubError) -> JSONResponse:
    headers = {}
    retry_after_s = getattr(error, "retry_after_s", None)  # 503 (a dependency down), 429 (a rate limit)
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return error_response(error.status, error.message, error.code, getattr(error, "extra", None), headers)


def install(app: FastAPI) -> None:
    def settings_of(request: Request) -> Settings:
        settings: Settings = request.app.state.platform.settings
        return settings

    @app.exception_handler(SpacehubError)
    async def _spacehub_error(_request: Request, exc: SpacehubError) -> JSONResponse:
        return _answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return error_response(400, message, "InvalidInput")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), _STATUS_CODES.get(exc.status_code, "Error"))

    # Everything else (raised by a handler, a dependency or a middleware) lands here: a dependency's failure
    # gets its own status, a bug a JSON 500 (with the traceback in the log, not in the answer).
    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = platform_error(exc, settings_of(request))
        if error is not None:
            log.warning("%s %s: %s", request.method, request.url.path, error.message)
            return _answer(error)
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error: see the server log", "InternalError")

    for kind in (redis.RedisError, OSError, OperationalError, PoolTimeout):
        app.add_exception_handler(kind, _unexpected)  # type: ignore[arg-type]
