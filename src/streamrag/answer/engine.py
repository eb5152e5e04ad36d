"""The answer engine: one async stream of typed events per question.

condense the question with the session's history → retrieve (off the event loop) → ``sources``
→ prompt → the LLM streams → ``token`` events, with ``citation`` events as soon as a marker
closes → ``usage`` → the run is recorded → ``done``. Closing the stream or cancelling its task
closes the LLM stream at once and records the partial answer with finish_reason "cancelled".
A retrieval or LLM failure gives ``error`` and then ``done`` with finish_reason "error",
keeping the partial answer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from streamrag.answer.citations import CitationScanner
from streamrag.answer.condense import CondenseMode, Condenser, estimate_tokens
from streamrag.answer.events import (
    Citation,
    CitedSource,
    Done,
    Error,
    Event,
    FinishReason,
    RunStarted,
    Source,
    Sources,
    Status,
    Token,
    Usage,
)
from streamrag.answer.prompt import build_messages
from streamrag.config import Settings
from streamrag.history.base import Memory, RunLog, RunRecord, Turn
from streamrag.history.sql import now
from streamrag.kb import KnowledgeBase
from streamrag.llm.base import LLM, LLMError
from streamrag.store import SearchFilter

log = logging.getLogger("streamrag.engine")


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    """How the engine condenses, how much it retrieves and how long the model may answer."""

    top_k: int = 5
    context_tokens: int = 1500  # estimated size of the sources given to the model (≥ 1 source)
    max_tokens: int = 512
    temperature: float = 0.1
    condense: CondenseMode = "llm"
    history_tokens: int = 1000
    history_turns: int = 20
    system_prompts: Mapping[str, str] = field(default_factory=dict)  # language → instructions

    @classmethod
    def from_settings(cls, settings: Settings) -> AnswerSettings:
        prompts = {"zh": settings.system_prompt_zh, "en": settings.system_prompt_en}
        return cls(
            top_k=settings.answer_top_k,
            context_tokens=settings.context_tokens,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            condense=settings.condense,
            history_tokens=settings.history_tokens,
            system_prompts={language: text for language, text in prompts.items() if text},
        )


@dataclass(slots=True)
class _Run:
    """What one run has produced so far: becomes the ``done`` event and the run record."""

    run_id: str
    session_id: str
    question: str
    trace_id: str
    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=now)
    seq: Iterator[int] = field(default_factory=itertools.count)
    standalone: str = ""
    sources: list[Source] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    citations: list[CitedSource] = field(default_factory=list)
    invalid_citations: int = 0
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0}
    )
    timings: dict[str, float] = field(default_factory=dict)
    finish: FinishReason = "stop"
    error: Error | None = None

    def ms_since(self, moment: float) -> float:
        return round((time.perf_counter() - moment) * 1000, 2)

    def end(self) -> None:
        """Close the timings; an upstream that failed or was stopped before it reported
        usage has produced (at least) one token per delta streamed."""
        self.timings["total_ms"] = self.ms_since(self.started)
        if not self.usage["completion_tokens"]:
            self.usage["completion_tokens"] = len(self.answer)

    def done(self) -> Done:
        return Done(
            run_id=self.run_id,
            seq=next(self.seq),
            answer="".join(self.answer),
            citations=self.citations,
            finish_reason=self.finish,
            timings=self.timings,
            usage=self.usage,
            invalid_citations=self.invalid_citations,
            standalone_question=self.standalone,
            sources=[source.chunk_id for source in self.sources],
        )


class AnswerEngine:
    """Answers questions over a knowledge base with an LLM, as a stream of events.

    ``memory`` supplies a session's history; ``runlog`` records every run. Both are optional
    (a backend's history, :class:`~streamrag.history.sql.SQLHistory`, serves as both).
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        llm: LLM,
        settings: AnswerSettings | None = None,
        *,
        memory: Memory | None = None,
        runlog: RunLog | None = None,
    ) -> None:
        self.kb = kb
        self.llm = llm
        self.settings = settings or AnswerSettings()
        self.memory = memory
        self.runlog = runlog
        self.condenser = Condenser(
            llm, self.settings.condense, history_tokens=self.settings.history_tokens
        )

    async def run(
        self,
        question: str,
        *,
        session_id: str | None = None,
        run_id: str | None = None,
        history: Sequence[Turn] | None = None,
        top_k: int | None = None,
        where: SearchFilter | None = None,
        trace_id: str | None = None,
        on_cancelled: Callable[[Done], None] | None = None,
    ) -> AsyncIterator[Event]:
        """The events of one answer, in order; see the module docstring.

        ``history`` overrides the session's stored history (an OpenAI-style client sends it).
        A cancelled run cannot yield its ``done``: it is recorded, then handed to
        ``on_cancelled`` (a server ends the run's stream with it).
        """
        run = _Run(
            run_id or uuid.uuid4().hex,
            session_id or uuid.uuid4().hex,
            question,
            trace_id=trace_id or uuid.uuid4().hex,
        )
        try:
            await self._record(run, begin=True)
            steps = self._steps(run, history, top_k or self.settings.top_k, where)
            async with aclosing(steps) as events:
                async for event in events:
                    yield event
        except (GeneratorExit, asyncio.CancelledError):
            run.finish = "cancelled"
            run.end()
            await self._record(run)
            if on_cancelled is not None:
                on_cancelled(run.done())
            raise
        run.end()
        await self._record(run)
        yield run.done()

    async def _steps(
        self,
        run: _Run,
        history: Sequence[Turn] | None,
        top_k: int,
        where: SearchFilter | None,
    ) -> AsyncIterator[Event]:
        yield RunStarted(
            run_id=run.run_id,
            seq=next(run.seq),
            session_id=run.session_id,
            trace_id=run.trace_id,
            question=run.question,
        )
        moment = time.perf_counter()
        if history is None and self.memory is not None:
            try:
                history = await asyncio.to_thread(
                    self.memory.history, run.session_id, self.settings.history_turns
                )
            except Exception as exc:  # the history's store is away: say so, end with done
                log.exception("conversation history unavailable for run %s", run.run_id)
                message = f"the conversation history cannot be read: {exc}"
                yield self._fail(run, "history_unavailable", message, retryable=True)
                return
        run.standalone = run.question
        if history:
            yield Status(run_id=run.run_id, seq=next(run.seq), stage="condensing")
            run.standalone = await self.condenser.condense(run.question, history)
        run.timings["condense_ms"] = run.ms_since(moment)
        yield Status(
            run_id=run.run_id,
            seq=next(run.seq),
            stage="retrieving",
            standalone_question=run.standalone,
        )

        moment = time.perf_counter()
        try:
            hits = await asyncio.to_thread(self.kb.search, run.standalone, top_k, where=where)
        except Exception as exc:  # reported in the stream; the run still ends with done
            log.exception("retrieval failed for run %s", run.run_id)
            yield self._fail(run, "retrieval_failed", f"retrieval failed: {exc}", retryable=True)
            return
        run.timings["retrieve_ms"] = run.ms_since(moment)
        run.sources = self._numbered_sources(hits)
        yield Sources(
            run_id=run.run_id,
            seq=next(run.seq),
            sources=run.sources,
            degraded=hits.degraded,
        )

        moment = time.perf_counter()
        messages = build_messages(run.standalone, run.sources, self.settings.system_prompts)
        run.timings["prompt_ms"] = run.ms_since(moment)
        yield Status(run_id=run.run_id, seq=next(run.seq), stage="generating")
        stream = self.llm.stream(
            messages, max_tokens=self.settings.max_tokens, temperature=self.settings.temperature
        )
        by_number = {source.number: source.chunk_id for source in run.sources}
        scanner = CitationScanner()
        try:
            async with aclosing(stream) as deltas:
                async for delta in deltas:
                    if delta.text:
                        if not run.answer:
                            run.timings["ttft_ms"] = run.ms_since(run.started)
                        run.answer.append(delta.text)
                        yield Token(run_id=run.run_id, seq=next(run.seq), text=delta.text)
                        for marker in scanner.feed(delta.text):
                            chunk_id = by_number.get(marker.number)
                            if chunk_id is None:
                                run.invalid_citations += 1
                                continue
                            cited = CitedSource(marker.number, chunk_id, marker.offset)
                            run.citations.append(cited)
                            yield Citation(
                                run_id=run.run_id,
                                seq=next(run.seq),
                                number=cited.number,
                                chunk_id=cited.chunk_id,
                                offset=cited.offset,
                            )
                    if delta.finish_reason == "length":
                        run.finish = "length"
                    if delta.prompt_tokens is not None:
                        run.usage["prompt_tokens"] = delta.prompt_tokens
                    if delta.completion_tokens is not None:
                        run.usage["completion_tokens"] = delta.completion_tokens
        except LLMError as exc:
            yield self._fail(run, exc.code, str(exc), retryable=exc.retryable)
            return
        yield Usage(run_id=run.run_id, seq=next(run.seq), **run.usage)

    def _numbered_sources(self, hits: Sequence) -> list[Source]:
        """The hits that fit in the context budget (at least one), numbered from 1."""
        sources: list[Source] = []
        used = 0
        for hit in hits:
            used += estimate_tokens(hit.chunk.text)
            if sources and used > self.settings.context_tokens:
                break
            sources.append(Source.from_chunk(len(sources) + 1, hit.chunk, round(hit.score, 6)))
        return sources

    @staticmethod
    def _fail(run: _Run, code: str, message: str, *, retryable: bool) -> Error:
        run.finish = "error"
        run.error = Error(
            run_id=run.run_id, seq=next(run.seq), code=code, message=message, retryable=retryable
        )
        return run.error

    async def _record(self, run: _Run, *, begin: bool = False) -> None:
        """Write the run record off the loop (``begin``: as the run starts, and a run that
        cannot be recorded does not start: the error is raised before any event); a
        cancellation cannot interrupt the write."""
        if self.runlog is None:
            return
        record = RunRecord(
            run_id=run.run_id,
            session_id=run.session_id,
            kb=self.kb.name,
            question=run.question,
            standalone_question=run.standalone or run.question,
            retrieved=[source.chunk_id for source in run.sources],
            answer="".join(run.answer),
            citations=list(run.citations),
            finish_reason="running" if begin else run.finish,
            timings=dict(run.timings),
            usage=dict(run.usage),
            model=self.llm.name,
            started_at=run.started_at,
            error=None
            if run.error is None
            else {"code": run.error.code, "message": run.error.message},
            invalid_citations=run.invalid_citations,
        )
        if begin:
            await asyncio.shield(asyncio.to_thread(self.runlog.begin, record))
            return
        try:
            await asyncio.shield(asyncio.to_thread(self.runlog.record, record))
        except Exception:  # a failed write must not break the answer stream
            log.exception("could not record run %s", run.run_id)
