"""What the routes share: settings, one :class:`RAG` per knowledge base, the live runs."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Annotated

from fastapi import Depends, Request

from streamrag.answer.events import Event
from streamrag.config import Settings
from streamrag.history.base import Turn
from streamrag.history.sqlite import SQLiteHistory
from streamrag.llm import LLM, make_llm
from streamrag.rag import RAG
from streamrag.server.errors import ApiError
from streamrag.server.live import LiveRun, LiveRuns
from streamrag.server.metrics import Metrics
from streamrag.server.observe import TRACE_ID
from streamrag.server.sse import EventStream, sse_bytes
from streamrag.store import SearchFilter


class Service:
    """The state of one ``streamrag serve``: answerers sharing one model and one history,
    the runs in flight, the metrics."""

    def __init__(self, settings: Settings, llm: LLM | None = None) -> None:
        self.settings = settings
        self.history = SQLiteHistory(settings.home / "history.sqlite")
        self.metrics = Metrics()
        self.runs = LiveRuns(grace_s=settings.resume_grace_s, metrics=self.metrics)
        self._llm = llm
        self._owns_llm = llm is None
        self._rags: dict[str, RAG] = {}
        self._lock = threading.Lock()
        self._ingest_locks: dict[str, threading.Lock] = {}

    def rag(self, kb: str | None, *, create: bool = False) -> RAG:
        """The answerer of a knowledge base (blocking: opens it, may load the model)."""
        name = kb or self.settings.kb
        with self._lock:
            if name not in self._rags:
                if self._llm is None:
                    self._llm = make_llm(self.settings)
                self._rags[name] = RAG(
                    name, settings=self.settings, llm=self._llm, history=self.history, create=create
                )
            return self._rags[name]

    def forget(self, kb: str) -> None:
        """Close a knowledge base's answerer (before the knowledge base is dropped)."""
        with self._lock:
            rag = self._rags.pop(kb, None)
        if rag is not None:
            rag.kb.close()

    def ingest_lock(self, kb: str) -> threading.Lock:
        """One ingest at a time per knowledge base."""
        with self._lock:
            return self._ingest_locks.setdefault(kb, threading.Lock())

    async def start(
        self,
        question: str,
        *,
        kb: str | None = None,
        session_id: str | None = None,
        top_k: int | None = None,
        where: SearchFilter | None = None,
        history: list[Turn] | None = None,
    ) -> LiveRun:
        """Start answering in a task of its own; the run outlives the request."""
        settings = self.settings
        if len(question) > settings.max_question_chars:
            raise ApiError(
                413,
                "question_too_long",
                f"the question has {len(question)} characters; "
                f"the limit is {settings.max_question_chars}",
            )
        history_chars = sum(len(t.question) + len(t.answer) for t in history or ())
        if history_chars > settings.max_history_chars:
            raise ApiError(
                413,
                "history_too_long",
                f"the earlier messages have {history_chars} characters; "
                f"the limit is {settings.max_history_chars}",
            )
        rag = await asyncio.to_thread(self.rag, kb)
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
        return self.runs.start(run_id, events, rag.history)

    def follow(self, run: LiveRun, after: int = -1) -> EventStream:
        """A run's events after seq ``after`` as server-sent events, then live ones."""
        events = run.follow(after, self.settings.heartbeat_s)
        return EventStream(sse_bytes(events), headers={"X-Run-Id": run.run_id})

    async def finished(self, run: LiveRun) -> list[Event]:
        """All of a run's events, once it has ended."""
        await asyncio.shield(run.task)
        return run.events

    async def aclose(self) -> None:
        """Stop the runs (recorded as cancelled), release the model's connections."""
        await self.runs.close()
        if self._owns_llm and self._llm is not None:
            await self._llm.aclose()


def get_service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[Service, Depends(get_service)]
