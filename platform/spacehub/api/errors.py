"""The one place where errors become HTTP answers: `{"error": message}` plus `X-Error-Code` on every route."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from spacehub.errors import SpacehubError

_STATUS_CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge", 422: "InvalidInput"}


def error_response(status: int, message: str, code: str, extra: dict[str, object] | None = None) -> JSONResponse:
    headers = {"X-Error-Code": code, "X-Error-Message": message.encode("ascii", "replace").decode()[:500]}
    return JSONResponse({"error": message, **(extra or {})}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(SpacehubError)
    async def _spacehub_error(_request: Request, exc: SpacehubError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, getattr(exc, "extra", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return error_response(400, message, "InvalidInput")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), _STATUS_CODES.get(exc.status_code, "Error"))
