"""The HTTP service: the engine's event stream as SSE, with resume and cancel.

Every answer runs as a :class:`~streamrag.server.live.LiveRun`, apart from the request that
started it: the request follows it, a reconnect resumes it, a cancel stops it.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from streamrag.answer.events import Error, Event
from streamrag.config import Settings, load_settings
from streamrag.errors import KnowledgeBaseNotFound, StreamragError
from streamrag.history.base import SessionInfo, Turn
from streamrag.history.sqlite import SQLiteHistory
from streamrag.kb import list_knowledge_bases
from streamrag.llm import LLM, make_llm
from streamrag.rag import RAG, Answer
from streamrag.server.live import LiveRun, LiveRuns
from streamrag.server.metrics import CONTENT_TYPE_LATEST, Metrics
from streamrag.server.observe import TRACE_ID, RequestLog
from streamrag.server.openai_api import ChatCompletionRequest, completion, completion_chunks
from streamrag.server.sse import HEADERS, EventStream, parse_event_id, plain_text, sse_bytes
from streamrag.store import SearchFilter

ID_PATTERN = r"^[\w.-]{1,64}$"


class Filters(BaseModel):
    """Restrict retrieval to some documents."""

    doc_ids: list[str] = Field(default_factory=list, max_length=1000)
    source_glob: str | None = Field(None, max_length=1000)
    meta: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=50)

    def to_filter(self) -> SearchFilter:
        return SearchFilter(tuple(self.doc_ids), self.source_glob, tuple(self.meta.items()))


class ChatRequest(BaseModel):
    """A question to answer as a stream of events."""

    question: str = Field(min_length=1, description="The question, in Chinese or English.")
    session_id: str | None = Field(None, pattern=ID_PATTERN, description="Continue a session.")
    kb: str | None = Field(None, pattern=ID_PATTERN, description="Knowledge base name.")
    top_k: int | None = Field(None, ge=1, le=50, description="Sources to retrieve.")
    filters: Filters | None = None


class SessionChange(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class ApiError(StreamragError):
    """An error with its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Answerers:
    """One :class:`RAG` per knowledge base, sharing the model and the history."""

    def __init__(self, settings: Settings, llm: LLM | None = None) -> None:
        self.settings = settings
        self.history = SQLiteHistory(settings.home / "history.sqlite")
        self._llm = llm
        self._owns_llm = llm is None
        self._rags: dict[str, RAG] = {}
        self._lock = threading.Lock()

    def get(self, kb: str | None) -> RAG:
        name = kb or self.settings.kb
        with self._lock:
            if name not in self._rags:
                if self._llm is None:
                    self._llm = make_llm(self.settings)
                self._rags[name] = RAG(
                    name, settings=self.settings, llm=self._llm, history=self.history, create=False
                )
            return self._rags[name]

    async def aclose(self) -> None:
        """Release the model's connections, if it was made here."""
        if self._owns_llm and self._llm is not None:
            await self._llm.aclose()


_bearer = HTTPBearer(auto_error=False, description="One of STREAMRAG_API_KEYS, if set.")


async def require_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With API keys configured, every route but /healthz needs one as a Bearer token."""
    keys: list[str] = request.app.state.settings.api_keys
    if not keys or request.url.path == "/healthz":
        return
    if credentials is None or not any(
        secrets.compare_digest(credentials.credentials, key) for key in keys
    ):
        raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <key>' is required")


def create_app(settings: Settings | None = None, *, llm: LLM | None = None) -> FastAPI:
    """The streamrag service; ``llm`` replaces the configured model (tests, embedding)."""
    settings = settings or load_settings()
    answerers = Answerers(settings, llm)
    metrics = Metrics()
    runs = LiveRuns(grace_s=settings.resume_grace_s, metrics=metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await runs.close()
        await answerers.aclose()

    app = FastAPI(
        title="streamrag",
        summary="Answers over your own documents, streamed with their sources.",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(require_key)],
    )
    app.add_middleware(RequestLog)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["X-Run-Id", "X-Trace-Id"],
        )
    app.state.settings = settings
    app.state.runs = runs
    app.state.answerers = answerers

    @app.exception_handler(StreamragError)
    async def streamrag_error(_: Request, exc: StreamragError) -> JSONResponse:
        status, code = 400, type(exc).__name__
        if isinstance(exc, ApiError):
            status, code = exc.status, exc.code
        elif isinstance(exc, KnowledgeBaseNotFound):
            status, code = 404, "kb_not_found"
        return JSONResponse({"error": {"code": code, "message": str(exc)}}, status_code=status)

    async def start(
        question: str,
        *,
        kb: str | None = None,
        session_id: str | None = None,
        top_k: int | None = None,
        where: SearchFilter | None = None,
        history: list[Turn] | None = None,
    ) -> LiveRun:
        if len(question) > settings.max_question_chars:
            raise ApiError(
                413,
                "question_too_long",
                f"the question has {len(question)} characters; "
                f"the limit is {settings.max_question_chars}",
            )
        rag = await asyncio.to_thread(answerers.get, kb)
        run_id = uuid.uuid4().hex
        events = rag.astream_events(
            question,
            session_id=session_id,
            run_id=run_id,
            top_k=top_k,
            where=where,
            history=history,
            trace_id=TRACE_ID.get(),
        )
        return runs.start(run_id, events, rag.history)

    async def start_chat(request: ChatRequest) -> LiveRun:
        return await start(
            request.question,
            kb=request.kb,
            session_id=request.session_id,
            top_k=request.top_k,
            where=request.filters.to_filter() if request.filters else None,
        )

    async def finished(run: LiveRun) -> list[Event]:
        await asyncio.shield(run.task)
        return run.events

    def follow(run: LiveRun, after: int = -1) -> EventStream:
        return EventStream(
            sse_bytes(run.follow(after, settings.heartbeat_s)), headers={"X-Run-Id": run.run_id}
        )

    @app.post("/v1/chat/stream", tags=["chat"], response_class=EventStream)
    async def chat_stream(request: ChatRequest) -> EventStream:
        """Answer a question as server-sent events: one message per engine event, with
        ``id: <run_id>:<seq>``, ``event: <type>`` and ``data: <json>``."""
        return follow(await start_chat(request))

    @app.get("/v1/chat/stream", tags=["chat"], response_class=EventStream)
    async def chat_stream_get(
        q: Annotated[str, Query(min_length=1, description="The question.")],
        session_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        kb: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        top_k: Annotated[int | None, Query(ge=1, le=50)] = None,
    ) -> EventStream:
        """The same stream for a browser ``EventSource``."""
        request = ChatRequest(question=q, session_id=session_id, kb=kb, top_k=top_k)
        return follow(await start_chat(request))

    @app.get("/v1/runs/{run_id}/events", tags=["runs"], response_class=EventStream)
    async def run_events(
        run_id: str,
        last_event_id: Annotated[str | None, Header()] = None,
        after: Annotated[int | None, Query(ge=-1, description="Resume after this seq.")] = None,
    ) -> EventStream:
        """Resume a run: the events after ``Last-Event-ID`` (or ``?after=``), then live ones."""
        run = runs.get(run_id)
        if run is None:
            raise ApiError(
                404,
                "run_not_live",
                f"run {run_id!r} is not running here (runs are kept {runs.keep_s:.0f} s after "
                f"they finish); its record is at /v1/runs/{run_id}",
            )
        resume_from = parse_event_id(last_event_id, run_id)
        if resume_from is None:
            resume_from = after if after is not None else -1
        return follow(run, resume_from)

    @app.post("/v1/runs/{run_id}/cancel", tags=["runs"])
    async def cancel_run(run_id: str) -> dict[str, Any]:
        """Stop a run now; its partial answer is recorded with finish_reason cancelled."""
        run = runs.get(run_id)
        if run is None:
            raise ApiError(404, "run_not_live", f"run {run_id!r} is not running here")
        cancelled = run.cancel()
        await asyncio.shield(run.task)
        return {"run_id": run_id, "cancelled": cancelled}

    @app.get("/v1/runs", tags=["runs"])
    async def list_runs(
        session_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """The recorded runs, oldest first (of one session, if given)."""
        records = await asyncio.to_thread(answerers.history.runs, session_id, limit)
        return [record.to_dict() for record in records]

    @app.get("/v1/runs/{run_id}", tags=["runs"])
    async def show_run(run_id: str) -> dict[str, Any]:
        """One run's record."""
        record = await asyncio.to_thread(answerers.history.get_run, run_id)
        if record is None:
            raise ApiError(404, "run_not_found", f"no run {run_id!r} is recorded")
        return record.to_dict()

    @app.post("/v1/chat", tags=["chat"])
    async def chat(request: ChatRequest) -> dict[str, Any]:
        """The whole answer as one JSON object (the non-streaming fallback)."""
        answer = Answer.from_events(await finished(await start_chat(request)))
        return asdict(answer)

    @app.get("/v1/chat/text", tags=["chat"], response_class=PlainTextResponse)
    async def chat_text(
        q: Annotated[str, Query(min_length=1, description="The question.")],
        session_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        kb: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    ) -> StreamingResponse:
        """The answer as plain chunked text (for curl), then its numbered sources."""
        run = await start(q, kb=kb, session_id=session_id)
        return StreamingResponse(
            plain_text(run.follow(-1, settings.heartbeat_s)),
            media_type="text/plain; charset=utf-8",
            headers={**HEADERS, "X-Run-Id": run.run_id},
        )

    @app.post("/v1/chat/completions", tags=["openai"], response_model=None)
    async def chat_completions(request: ChatCompletionRequest) -> dict[str, Any] | EventStream:
        """OpenAI-compatible chat completions; ``model`` names the knowledge base."""
        try:
            question, history = request.question_and_history()
        except ValueError as exc:
            raise ApiError(422, "invalid_messages", str(exc)) from None
        kb = None if request.model == "default" else request.model
        run = await start(question, kb=kb, history=history)
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            chunks = completion_chunks(
                run.follow(-1, settings.heartbeat_s), request.model, include_usage
            )
            return EventStream(chunks, headers={"X-Run-Id": run.run_id})
        events = await finished(run)
        error = next((e for e in events if isinstance(e, Error)), None)
        if error is not None:
            raise ApiError(502, error.code, error.message)
        return completion(events, request.model)

    @app.get("/v1/models", tags=["openai"])
    async def models() -> dict[str, Any]:
        """The knowledge bases, as OpenAI models."""
        infos = await asyncio.to_thread(list_knowledge_bases, settings)
        return {
            "object": "list",
            "data": [
                {"id": info.name, "object": "model", "created": 0, "owned_by": "streamrag"}
                for info in infos
            ],
        }

    @app.get("/v1/sessions", tags=["sessions"])
    async def list_sessions(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Conversations, most recently used first."""
        sessions = await asyncio.to_thread(answerers.history.sessions, limit)
        return [session.to_dict() for session in sessions]

    async def existing_session(session_id: str) -> SessionInfo:
        session = await asyncio.to_thread(answerers.history.session, session_id)
        if session is None:
            raise ApiError(404, "session_not_found", f"no session {session_id!r}")
        return session

    @app.get("/v1/sessions/{session_id}", tags=["sessions"])
    async def show_session(session_id: str) -> dict[str, Any]:
        """A conversation and its runs, oldest first."""
        session = await existing_session(session_id)
        records = await asyncio.to_thread(answerers.history.runs, session_id, 1000)
        return {**session.to_dict(), "history": [record.to_dict() for record in records]}

    @app.patch("/v1/sessions/{session_id}", tags=["sessions"])
    async def rename_session(session_id: str, change: SessionChange) -> dict[str, Any]:
        """Rename a conversation."""
        await existing_session(session_id)
        await asyncio.to_thread(answerers.history.rename_session, session_id, change.title)
        return await show_session(session_id)

    @app.delete("/v1/sessions/{session_id}", tags=["sessions"])
    async def delete_session(session_id: str) -> dict[str, Any]:
        """Delete a conversation and its run records."""
        await existing_session(session_id)
        deleted = await asyncio.to_thread(answerers.history.delete_session, session_id)
        return {"session_id": session_id, "deleted_runs": deleted}

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: time to first token, answer time, tokens/s, retrieval latency,
        active streams, runs by finish reason, cancellations, disconnects, errors by code."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "active_runs": runs.active}

    return app
