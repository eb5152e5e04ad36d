"""Conversations: list, show with their runs, rename, delete."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query

from streamrag.history.base import SessionInfo
from streamrag.server.errors import ApiError
from streamrag.server.openapi import errors
from streamrag.server.schemas import SessionChange
from streamrag.server.service import Service, ServiceDep

router = APIRouter(tags=["sessions"])


async def _existing(service: Service, session_id: str) -> SessionInfo:
    session = await asyncio.to_thread(service.history.session, session_id)
    if session is None:
        raise ApiError(404, "session_not_found", f"no session {session_id!r}")
    return session


@router.get("/v1/sessions")
async def list_sessions(
    service: ServiceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """Conversations, most recently used first."""
    sessions = await asyncio.to_thread(service.history.sessions, limit)
    return [session.to_dict() for session in sessions]


@router.get("/v1/sessions/{session_id}", responses=errors(404))
async def show_session(session_id: str, service: ServiceDep) -> dict[str, Any]:
    """A conversation and its runs, oldest first."""
    session = await _existing(service, session_id)
    records = await asyncio.to_thread(service.history.runs, session_id, 1000)
    return {**session.to_dict(), "history": [record.to_dict() for record in records]}


@router.patch("/v1/sessions/{session_id}", responses=errors(404))
async def rename_session(
    session_id: str, change: SessionChange, service: ServiceDep
) -> dict[str, Any]:
    """Rename a conversation."""
    await _existing(service, session_id)
    await asyncio.to_thread(service.history.rename_session, session_id, change.title)
    return await show_session(session_id, service)


@router.delete("/v1/sessions/{session_id}", responses=errors(404, 503))
async def delete_session(session_id: str, service: ServiceDep) -> dict[str, Any]:
    """Delete a conversation and its run records; its runs still answering are cancelled
    first."""
    await _existing(service, session_id)
    await service.cancel_session(session_id)
    deleted = await asyncio.to_thread(service.history.delete_session, session_id)
    return {"session_id": session_id, "deleted_runs": deleted}
