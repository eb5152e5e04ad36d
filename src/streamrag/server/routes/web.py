"""The web chat page at ``/`` and its static files under ``/static/``.

The page and its assets need no API key (they hold no data); the page asks for one when the
API answers 401, and sends it as a Bearer token.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from streamrag.web import STATIC

router = APIRouter(include_in_schema=False)

# Revalidated on each load, so an upgrade shows at once.
_FRESH = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
# Only the page's own files run; the answer's Markdown is sanitised as well (DOMPurify).
_PAGE_HEADERS = {
    **_FRESH,
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


@router.get("/")
async def page() -> FileResponse:
    """The chat page."""
    return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)


class StaticAssets(StaticFiles):
    """The page's modules and styles."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_FRESH)
        return response


assets = StaticAssets(directory=STATIC)
