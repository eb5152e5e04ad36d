"""The HTTP service: the engine's event stream as SSE, with resume and cancel.

Every answer runs as a :class:`~streamrag.server.live.LiveRun`, apart from the request that
started it: the request follows it, a reconnect resumes it, a cancel stops it. The routes live
in :mod:`streamrag.server.routes`, one module per resource, over a shared
:class:`~streamrag.server.service.Service`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from streamrag.config import Settings, load_settings
from streamrag.errors import StreamragError
from streamrag.llm import LLM
from streamrag.server.errors import (
    ApiError,
    error_response,
    http_error_response,
    internal_error_response,
    validation_response,
)
from streamrag.server.limits import BodyLimit
from streamrag.server.observe import RequestLog
from streamrag.server.openapi import complete_openapi
from streamrag.server.routes import chat, kbs, openai, ops, sessions, web
from streamrag.server.service import Service, ServiceDep

_bearer = HTTPBearer(auto_error=False, description="One of STREAMRAG_API_KEYS, if set.")


async def require_key(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With API keys configured, a route that carries data needs one as a Bearer token."""
    keys = service.settings.api_keys
    if not keys:
        return
    if credentials is None or not any(
        secrets.compare_digest(credentials.credentials, key) for key in keys
    ):
        raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <key>' is required")


def create_app(settings: Settings | None = None, *, llm: LLM | None = None) -> FastAPI:
    """The streamrag service; ``llm`` replaces the configured model (tests, embedding)."""
    settings = settings or load_settings()
    service = Service(settings, llm)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.open()
        yield
        await service.aclose()

    app = FastAPIOffline(  # /docs and /redoc with their assets from the package, no CDN
        title="streamrag",
        summary="Answers over your own documents, streamed with their sources.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_kb * 1024)
    app.add_middleware(RequestLog)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["X-Run-Id", "X-Trace-Id"],
        )
    app.add_exception_handler(StreamragError, error_response)
    app.add_exception_handler(RequestValidationError, validation_response)
    app.add_exception_handler(StarletteHTTPException, http_error_response)
    app.add_exception_handler(Exception, internal_error_response)
    for module in (chat, openai, sessions, kbs, ops):
        app.include_router(module.router, dependencies=[Depends(require_key)])
    app.include_router(ops.public)  # health: no key, no data
    app.include_router(web.router)  # the page: no key, no data
    complete_openapi(app)
    app.mount("/static", web.assets, name="static")
    return app
