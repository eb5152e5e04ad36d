"""Errors as the API returns them: ``{"error": {"code", "message"}}`` with a precise status."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from streamrag.answer.events import Error
from streamrag.errors import (
    BackendUnavailable,
    DocumentNotFound,
    InvalidName,
    KnowledgeBaseNotFound,
    StreamragError,
)

STATUS = {
    KnowledgeBaseNotFound: 404,
    DocumentNotFound: 404,
    InvalidName: 422,
    BackendUnavailable: 503,  # retryable: the database is back by itself
}


class ApiError(StreamragError):
    """An error with its HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def failed_run(error: Error) -> ApiError:
    """The status of a non-streamed answer whose run failed: 502 (the model or a service
    behind this one failed), with the run's error code and message."""
    return ApiError(502, error.code, f"run {error.run_id} failed: {error.message}")


async def error_response(_: Request, exc: Exception) -> JSONResponse:
    """The JSON body and status of a streamrag error raised by a route."""
    if isinstance(exc, ApiError):
        status, code = exc.status, exc.code
    else:
        status = STATUS.get(type(exc), 400)
        code = _snake(type(exc).__name__)
    headers = {"Retry-After": "1"} if status == 503 else None  # it comes back by itself
    return JSONResponse(
        {"error": {"code": code, "message": str(exc)}}, status_code=status, headers=headers
    )


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


async def validation_response(_: Request, exc: Exception) -> JSONResponse:
    """A request that does not match the schema: 422 naming each field and what is wrong."""
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    message = "; ".join(f"{'.'.join(str(part) for part in d['loc'])}: {d['msg']}" for d in details)
    body = {"code": "invalid_request", "message": message, "details": details}
    return JSONResponse({"error": body}, status_code=422)


async def internal_error_response(_: Request, exc: Exception) -> JSONResponse:
    """A bug: 500 in the same shape (the traceback goes to the log, not to the client)."""
    message = f"internal error ({type(exc).__name__}); the server log has the details"
    return JSONResponse({"error": {"code": "internal_error", "message": message}}, 500)


async def http_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Unknown routes, wrong methods and the like, in the same shape. A wrong method's
    ``Allow`` names every method of the path (Starlette's names only the first route's)."""
    assert isinstance(exc, StarletteHTTPException)
    code = _snake(HTTPStatus(exc.status_code).phrase.replace(" ", ""))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}},
        status_code=exc.status_code,
        headers=headers,
    )


def _allowed_methods(request: Request) -> set[str]:
    routes = request.app.router.routes
    return {
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    }
