"""Answers: streamed as server-sent events, as one JSON object or as plain text; and runs,
resumed, cancelled or shown from their records."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from streamrag.answer.events import Source
from streamrag.history.base import RunRecord
from streamrag.rag import Answer
from streamrag.server.errors import ApiError, failed_run
from streamrag.server.live import LiveRun
from streamrag.server.openapi import errors, run_stream
from streamrag.server.schemas import ID_PATTERN, ChatRequest, KbName
from streamrag.server.service import Service, ServiceDep
from streamrag.server.sse import HEADERS, EventStream, parse_event_id, plain_text

router = APIRouter()


async def _start(service: Service, request: ChatRequest) -> LiveRun:
    return await service.start(
        request.question,
        kb=request.kb,
        session_id=request.session_id,
        top_k=request.top_k,
        where=request.filters.to_filter() if request.filters else None,
    )


@router.post(
    "/v1/chat/stream",
    tags=["chat"],
    response_class=EventStream,
    responses={**run_stream("The run's events, as they happen."), **errors(404, 413)},
)
async def chat_stream(request: ChatRequest, service: ServiceDep) -> EventStream:
    """Answer a question as server-sent events: one message per engine event, with
    ``id: <run_id>:<seq>``, ``event: <type>`` and ``data: <json>``."""
    return service.follow(await _start(service, request))


@router.get(
    "/v1/chat/stream",
    tags=["chat"],
    response_class=EventStream,
    response_model=None,
    responses={
        **run_stream("The run's events, as they happen."),
        204: {"description": "A reconnect to a run with nothing left to send."},
        **errors(404, 413),
    },
)
async def chat_stream_get(
    service: ServiceDep,
    q: Annotated[str, Query(min_length=1, description="The question.")],
    session_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    kb: Annotated[KbName | None, Query()] = None,
    top_k: Annotated[int | None, Query(ge=1, le=50)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventStream | Response:
    """The same stream for a browser ``EventSource``. Its automatic reconnect (with
    ``Last-Event-ID``) resumes the run it was following, never asks again: a finished
    run's reconnect gets 204, which ends the ``EventSource``."""
    if last_event_id is not None:
        resumed = parse_event_id(last_event_id)
        if resumed is None:
            return Response(status_code=204)
        return await service.resume(*resumed)
    request = ChatRequest(question=q, session_id=session_id, kb=kb, top_k=top_k)
    return service.follow(await _start(service, request))


@router.post("/v1/chat", tags=["chat"], responses=errors(404, 413, 502))
async def chat(request: ChatRequest, service: ServiceDep) -> dict[str, Any]:
    """The whole answer as one JSON object (the non-streaming fallback). A run that failed
    is a 502 with the error of the run, as for ``/v1/chat/completions``."""
    answer = Answer.from_events(await service.finished(await _start(service, request)))
    if answer.error is not None:
        raise failed_run(answer.error)
    return asdict(answer)


@router.get(
    "/v1/chat/text",
    tags=["chat"],
    response_class=PlainTextResponse,
    responses=errors(404, 413),
)
async def chat_text(
    service: ServiceDep,
    q: Annotated[str, Query(min_length=1, description="The question.")],
    session_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    kb: Annotated[KbName | None, Query()] = None,
) -> StreamingResponse:
    """The answer as plain chunked text (for curl), then its numbered sources."""
    run = await service.start(q, kb=kb, session_id=session_id)
    return StreamingResponse(
        plain_text(run.follow(-1, service.settings.heartbeat_s)),
        media_type="text/plain; charset=utf-8",
        headers={**HEADERS, "X-Run-Id": run.run_id},
    )


@router.get(
    "/v1/runs/{run_id}/events",
    tags=["runs"],
    response_class=EventStream,
    response_model=None,
    responses={
        **run_stream("The run's events after the one given, then live ones."),
        204: {"description": "Nothing after that event: the run has ended."},
        **errors(404),
    },
)
async def run_events(
    run_id: str,
    service: ServiceDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=-1, description="Resume after this seq.")] = None,
) -> EventStream | Response:
    """Resume a run: the events after ``Last-Event-ID`` (or ``?after=``), then live ones; a
    run no longer in memory (finished long ago, or interrupted by a server restart) is
    read from the run event log and ended with ``done``; 204 when nothing is left."""
    resumed = parse_event_id(last_event_id)
    if resumed is not None and resumed[0] == run_id:
        resume_from = resumed[1]
    else:
        resume_from = after if after is not None else -1
    return await service.resume(run_id, resume_from)


@router.post("/v1/runs/{run_id}/cancel", tags=["runs"], responses=errors(404, 503))
async def cancel_run(run_id: str, service: ServiceDep) -> dict[str, Any]:
    """Stop a run now, on whichever replica runs it; its partial answer is recorded with
    finish_reason cancelled."""
    return {"run_id": run_id, "cancelled": await service.cancel(run_id)}


@router.get("/v1/runs", tags=["runs"])
async def list_runs(
    service: ServiceDep,
    session_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        str | None, Query(max_length=64, description="The next page: runs older than this one.")
    ] = None,
) -> list[dict[str, Any]]:
    """The recorded runs, newest first (of one session, if given), ``limit`` at a time: the
    next page is ``?before=<the last run_id of this one>``."""
    records = await asyncio.to_thread(service.history.runs, session_id, limit, before)
    return [record.to_dict() for record in reversed(records)]


async def _record(service: Service, run_id: str) -> RunRecord:
    record = await asyncio.to_thread(service.history.get_run, run_id)
    if record is None:
        raise ApiError(404, "run_not_found", f"no run {run_id!r} is recorded")
    return record


@router.get("/v1/runs/{run_id}", tags=["runs"], responses=errors(404))
async def show_run(run_id: str, service: ServiceDep) -> dict[str, Any]:
    """One run's record."""
    return (await _record(service, run_id)).to_dict()


@router.get("/v1/runs/{run_id}/sources", tags=["runs"], responses=errors(404))
async def run_sources(run_id: str, service: ServiceDep) -> list[dict[str, Any]]:
    """The numbered sources a recorded run retrieved, read back from its knowledge base
    (``score`` is not recorded: null). A chunk no longer stored — its document changed or
    was removed — is listed with ``missing: true`` and its id only."""
    record = await _record(service, run_id)
    base = await asyncio.to_thread(service.knowledge_base, record.kb)
    chunks = await asyncio.to_thread(lambda: [base.store.get_chunk(c) for c in record.retrieved])
    return [
        {**asdict(Source.from_chunk(number, chunk, None)), "missing": False}
        if chunk is not None
        else {"number": number, "chunk_id": chunk_id, "missing": True}
        for number, (chunk_id, chunk) in enumerate(zip(record.retrieved, chunks, strict=True), 1)
    ]
