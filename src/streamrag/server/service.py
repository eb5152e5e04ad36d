"""What the routes share: settings, the backend, one :class:`KnowledgeBase` and (for
answers) one :class:`RAG` per knowledge base, the live runs."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request, Response

from streamrag.answer.events import Done, Event, answer_of
from streamrag.backends import Backend, open_backend
from streamrag.config import Settings
from streamrag.history.base import Turn
from streamrag.ingest.loaders import Origin
from streamrag.ingest.pipeline import IngestEvent
from streamrag.kb import KnowledgeBase
from streamrag.llm import LLM, make_llm
from streamrag.moderation import rules_for
from streamrag.rag import RAG
from streamrag.server.errors import ApiError
from streamrag.server.ingest import IngestWorkers
from streamrag.server.live import LiveLog, LiveRun, LiveRuns
from streamrag.server.metrics import Metrics
from streamrag.server.observe import TRACE_ID
from streamrag.server.relay import RunRelay, ensure_reachable
from streamrag.server.replicas import Replicas
from streamrag.server.sse import EventStream, sse_bytes
from streamrag.store import SearchFilter

log = logging.getLogger("streamrag.server")


class Service:
    """The state of one ``streamrag serve``: the backend, answerers sharing one model, the
    runs in flight, the metrics."""

    def __init__(
        self, settings: Settings, llm: LLM | None = None, backend: Backend | None = None
    ) -> None:
        self.settings = settings
        rules_for(settings)  # a broken moderation rules file stops the start, named
        self.backend = backend or open_backend(settings)
        self.history = self.backend.history
        self.metrics = Metrics()
        relay = None
        if settings.redis_url:
            ensure_reachable(settings.redis_url)
            relay = RunRelay(settings.redis_url)
        self.runs = LiveRuns(
            grace_s=settings.resume_grace_s,
            metrics=self.metrics,
            heartbeat_s=settings.heartbeat_s,
            relay=relay,
        )
        self.replicas = (
            Replicas(relay, self.runs, self.history, settings) if relay is not None else None
        )
        self._llm = llm
        self._owns_llm = llm is None
        self._kbs: dict[str, KnowledgeBase] = {}
        self._rags: dict[str, RAG] = {}
        self._lock = threading.Lock()
        self._ingest_locks: dict[str, asyncio.Lock] = {}
        self._ingest_workers = IngestWorkers(settings.ingest_workers)
        self._ingests: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def knowledge_base(self, kb: str | None) -> KnowledgeBase:
        """An existing knowledge base, to list, search or change (blocking: opens it)."""
        name = kb or self.settings.kb
        with self._lock:
            if name not in self._kbs:
                self._kbs[name] = KnowledgeBase(
                    name, settings=self.settings, backend=self.backend, create=False
                )
            return self._kbs[name]

    def rag(self, kb: str | None) -> RAG:
        """The answerer of a knowledge base (blocking: opens it, makes the model)."""
        base = self.knowledge_base(kb)
        with self._lock:
            if base.name not in self._rags:
                if self._llm is None:
                    self._llm = make_llm(self.settings)
                self._rags[base.name] = RAG(base, llm=self._llm)
            return self._rags[base.name]

    def forget(self, kb: str) -> None:
        """Close a knowledge base (before it is dropped)."""
        with self._lock:
            self._rags.pop(kb, None)
            base = self._kbs.pop(kb, None)
        if base is not None:
            base.close()

    @asynccontextmanager
    async def ingest_turn(self, kb: str) -> AsyncIterator[None]:
        """One ingest (or document removal, or drop) at a time per knowledge base, across
        the replicas too; waiting for it holds no thread."""
        async with self._ingest_locks.setdefault(kb, asyncio.Lock()):
            if self.replicas is None:
                yield
                return
            async with self.replicas.ingest_lock(kb):
                yield

    async def ingest(self, kb: str, origins: dict[Path, Origin]) -> AsyncIterator[IngestEvent]:
        """Ingest stored uploads in a worker process, in turn with the knowledge base's other
        ingests; the events as they happen. The ingest runs to its end (and keeps its turn
        until then) even if nobody reads them."""
        queue: asyncio.Queue[IngestEvent | Exception | None] = asyncio.Queue()

        async def run() -> None:
            try:
                async with self.ingest_turn(kb):
                    events = self._ingest_workers.ingest(self.settings, kb, list(origins), origins)
                    async for event in events:
                        queue.put_nowait(event)
                    if not await asyncio.to_thread(self.backend.catalog.exists, kb):
                        await asyncio.to_thread(self.backend.uploads.drop, kb)  # all failed
            except Exception as exc:  # reported to the reader, never lost in the task
                queue.put_nowait(exc)
            finally:
                await asyncio.to_thread(self.backend.uploads.release, origins)
                queue.put_nowait(None)

        task = asyncio.create_task(run(), name=f"ingest-{kb}")
        self._ingests.add(task)
        task.add_done_callback(self._ingests.discard)
        while (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item

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
            on_cancelled=lambda done: run.cancelled_with(done),
        )
        run = self.runs.start(run_id, events, rag.history)
        await run.begun()  # a run that cannot be recorded fails here (503), not in the stream
        return run

    def follow(self, run: LiveRun, after: int = -1) -> EventStream:
        """A run's events after seq ``after`` as server-sent events, then live ones."""
        events = run.follow(after, self.settings.heartbeat_s)
        return EventStream(sse_bytes(events), headers={"X-Run-Id": run.run_id})

    @property
    def live(self) -> list[LiveLog]:
        """Where runs still answering are read: this process's, then the other replicas'."""
        return [self.runs] if self.replicas is None else [self.runs, self.replicas]

    async def resume(self, run_id: str, after: int = -1) -> EventStream | Response:
        """A run's events after seq ``after``: live if it runs here or on another replica,
        else as recorded in the run event log and ended by ``done`` (built from the record
        of a run whose own ``done`` was never logged: an interrupted one). Nothing left to
        send: 204."""
        headers = {"X-Run-Id": run_id}
        for live in self.live:
            if (last := await live.last(run_id)) is None:
                continue
            last_seq, done = last
            if done and last_seq <= after:
                return Response(status_code=204, headers=headers)
            return EventStream(sse_bytes(live.follow(run_id, after)), headers=headers)
        record = await asyncio.to_thread(self.history.get_run, run_id)
        if record is None:
            raise ApiError(404, "run_not_found", f"no run {run_id!r} is recorded")
        if not record.finished:
            raise ApiError(
                404,
                "run_not_live",
                f"run {run_id!r} is running in another server process; resume it there",
            )
        logged = await asyncio.to_thread(self.history.events, run_id)
        if not logged or not isinstance(logged[-1], Done):
            logged.append(record.done_event(logged[-1].seq + 1 if logged else 0))
        missed = [event for event in logged if event.seq > after]
        if not missed:
            return Response(status_code=204, headers=headers)
        return EventStream(sse_bytes(_iterate(missed)), headers=headers)

    async def cancel(self, run_id: str) -> bool:
        """Stop a run now, on whichever replica runs it, and wait until it has ended; False
        when it had already ended. Not running anywhere: 404."""
        live = self.live
        if await self.runs.last(run_id) is None and len(live) > 1:
            return await live[-1].cancel(run_id)  # another replica's, or 404 / 503 there
        return await self.runs.cancel(run_id)

    async def cancel_session(self, session_id: str) -> None:
        """Cancel a session's runs still answering, here and on the other replicas, and wait
        until they have ended (so that none records itself into the deleted session)."""
        await self.runs.cancel_session(session_id)
        if self.replicas is not None:
            await self.replicas.cancel_session(session_id)

    async def open(self) -> None:
        """Start serving: end the runs a dead server process left running, join the other
        replicas, and keep ending this one's runs whose end could not be recorded."""
        orphans = await asyncio.to_thread(self.history.interrupt_orphans)
        if orphans:
            log.warning("marked %d runs of a stopped process as interrupted", len(orphans))
        if self.replicas is not None:
            await self.replicas.join()
        self._sweeper = asyncio.create_task(self._sweep(), name="unrecorded-runs")

    async def _sweep(self) -> None:
        """Every ``replica_timeout_s``: a run that ended here but is still ``running`` in
        its record (the store was away when it ended) is recorded as interrupted, with the
        answer it gave."""
        while True:
            await asyncio.sleep(self.settings.replica_timeout_s)
            try:
                running = await asyncio.to_thread(self.history.running)
                for run_id, owner in running.items():
                    run = self.runs.get(run_id)
                    if owner != self.history.owner or run is None or not run.finished:
                        continue
                    message = "the store was away when this run ended"
                    answer = answer_of(run.events)
                    await asyncio.to_thread(
                        self.history.interrupt, run_id, answer, "store_unavailable", message
                    )
                    log.warning("run %s: %s; recorded as interrupted", run_id, message)
            except Exception as exc:  # still away: the next round tries again
                log.warning("could not look for unrecorded runs: %s", exc)

    async def finished(self, run: LiveRun) -> list[Event]:
        """All of a run's events, once it has ended."""
        await asyncio.shield(run.task)
        return run.events

    async def aclose(self) -> None:
        """Stop the runs (recorded as cancelled), let the ingests finish, release the
        model's connections and the ingest workers."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.runs.close()
        if self.replicas is not None:
            await self.replicas.leave()
        await asyncio.gather(*self._ingests, return_exceptions=True)
        await asyncio.to_thread(self._ingest_workers.close)
        if self._owns_llm and self._llm is not None:
            await self._llm.aclose()
        for base in self._kbs.values():
            await asyncio.to_thread(base.close)
        await asyncio.to_thread(self.backend.close)


async def _iterate(events: Iterable[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


def get_service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[Service, Depends(get_service)]
