"""The answer engine: one async stream of typed events per question.

Stages: condense the question with the session's history → retrieve (off the event loop) →
``sources`` → prompt → the LLM streams ``token`` events → ``usage``. The events pass through
the transformers (``citation`` events as soon as a marker closes, by default), are numbered as
they leave, the run is recorded, and ``done`` ends the stream (see :mod:`streamrag.answer.run`).
Closing the stream or cancelling its task closes the LLM stream at once and records the
partial answer with finish_reason "cancelled". A retrieval or LLM failure gives ``error`` and
then ``done`` with finish_reason "error", keeping the partial answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from streamrag.answer.citations import cite
from streamrag.answer.condense import CondenseMode, Condenser, estimate_tokens
from streamrag.answer.events import (
    Done,
    Event,
    RunStarted,
    Source,
    Sources,
    Status,
    Token,
    Usage,
)
from streamrag.answer.prompt import build_messages
from streamrag.answer.run import UNNUMBERED, EventTransformer, RunState
from streamrag.config import Settings
from streamrag.history.base import Memory, RunLog, RunRecord, Turn
from streamrag.kb import KnowledgeBase
from streamrag.llm import context_budget
from streamrag.llm.base import LLM, LLMError
from streamrag.store import SearchFilter

Stage = Callable[[RunState], AsyncIterator[Event]]

log = logging.getLogger("streamrag.engine")


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    """How the engine condenses, how much it retrieves and how long the model may answer."""

    top_k: int = 5
    context_tokens: int = 1500  # estimated size of the sources given to the model (≥ 1 source)
    max_tokens: int = 512
    temperature: float = 0.1
    condense: CondenseMode = "rules"
    history_tokens: int = 1000
    history_turns: int = 20
    system_prompts: Mapping[str, str] = field(default_factory=dict)  # language → instructions

    @classmethod
    def from_settings(cls, settings: Settings) -> AnswerSettings:
        prompts = {"zh": settings.system_prompt_zh, "en": settings.system_prompt_en}
        return cls(
            top_k=settings.answer_top_k,
            context_tokens=context_budget(settings),
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            condense=settings.condense,
            history_tokens=settings.history_tokens,
            system_prompts={language: text for language, text in prompts.items() if text},
        )


class AnswerEngine:
    """Answers questions over a knowledge base with an LLM, as a stream of events.

    The stages (condense → retrieve → generate) make the events; ``transformers`` post-process
    them in order (by default :func:`~streamrag.answer.citations.cite`). ``memory`` supplies a
    session's history; ``runlog`` records every run. Both are optional (a backend's history,
    :class:`~streamrag.history.sql.SQLHistory`, serves as both).
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        llm: LLM,
        settings: AnswerSettings | None = None,
        *,
        memory: Memory | None = None,
        runlog: RunLog | None = None,
        transformers: Sequence[EventTransformer] = (cite,),
    ) -> None:
        self.kb = kb
        self.llm = llm
        self.settings = settings or AnswerSettings()
        self.memory = memory
        self.runlog = runlog
        self.transformers = list(transformers)
        self.stages: list[Stage] = [self._condense, self._retrieve, self._generate]
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
        run = RunState(
            run_id or uuid.uuid4().hex,
            session_id or uuid.uuid4().hex,
            question,
            trace_id=trace_id or uuid.uuid4().hex,
            history=history,
            top_k=top_k or self.settings.top_k,
            where=where,
        )
        chain = [self._stages(run)]
        for transform in self.transformers:
            chain.append(transform(chain[-1], run))
        begun = False
        try:
            async for event in chain[-1]:
                if not begun:  # recorded as its first event leaves: the question moderated
                    await self._record(run, begin=True)
                    begun = True
                yield run.sent(event)
        except BaseException as exc:  # the model's stream stops before anything else
            await self._close(chain)
            if isinstance(exc, GeneratorExit | asyncio.CancelledError):
                run.finish = "cancelled"
                run.end()
                await self._record(run)
                if on_cancelled is not None:
                    on_cancelled(run.done())
            raise
        run.end()
        await self._record(run)
        yield run.done()

    @staticmethod
    async def _close(chain: list[AsyncIterator[Event]]) -> None:
        """Close every link, outermost first: the model's stream stops at once."""
        for link in reversed(chain):
            await link.aclose()  # type: ignore[attr-defined]

    async def _stages(self, run: RunState) -> AsyncIterator[Event]:
        yield RunStarted(
            run_id=run.run_id,
            seq=UNNUMBERED,
            session_id=run.session_id,
            trace_id=run.trace_id,
            question=run.question,
        )
        for stage in self.stages:
            async with aclosing(stage(run)) as events:
                async for event in events:
                    yield event
            if run.error is not None:
                return

    async def _condense(self, run: RunState) -> AsyncIterator[Event]:
        """The question made standalone with the conversation so far."""
        moment = time.perf_counter()
        history = run.history
        if history is None and self.memory is not None:
            try:
                history = await asyncio.to_thread(
                    self.memory.history, run.session_id, self.settings.history_turns
                )
            except Exception as exc:  # the history's store is away: say so, end with done
                log.exception("conversation history unavailable for run %s", run.run_id)
                message = f"the conversation history cannot be read: {exc}"
                yield run.fail("history_unavailable", message, retryable=True)
                return
        run.standalone = run.question
        if history:
            yield Status(run_id=run.run_id, seq=UNNUMBERED, stage="condensing")
            run.standalone = await self.condenser.condense(run.question, history)
        run.timings["condense_ms"] = run.ms_since(moment)

    async def _retrieve(self, run: RunState) -> AsyncIterator[Event]:
        """The sources, before the model is asked."""
        yield Status(
            run_id=run.run_id,
            seq=UNNUMBERED,
            stage="retrieving",
            standalone_question=run.standalone,
        )
        moment = time.perf_counter()
        try:
            hits = await asyncio.to_thread(
                self.kb.search, run.standalone, run.top_k, where=run.where
            )
        except Exception as exc:  # reported in the stream; the run still ends with done
            log.exception("retrieval failed for run %s", run.run_id)
            yield run.fail("retrieval_failed", f"retrieval failed: {exc}", retryable=True)
            return
        run.timings["retrieve_ms"] = run.ms_since(moment)
        if hits.rerank_ms is not None:
            run.timings["rerank_ms"] = hits.rerank_ms
        run.sources = self._numbered_sources(hits)
        yield Sources(
            run_id=run.run_id, seq=UNNUMBERED, sources=run.sources, degraded=hits.degraded
        )

    async def _generate(self, run: RunState) -> AsyncIterator[Event]:
        """The model's answer, token by token, then its usage."""
        moment = time.perf_counter()
        messages = build_messages(run.standalone, run.sources, self.settings.system_prompts)
        run.timings["prompt_ms"] = run.ms_since(moment)
        yield Status(run_id=run.run_id, seq=UNNUMBERED, stage="generating")
        stream = self.llm.stream(
            messages, max_tokens=self.settings.max_tokens, temperature=self.settings.temperature
        )
        try:
            async with aclosing(stream) as deltas:
                async for delta in deltas:
                    if delta.queued is not None:  # the model answers others first
                        stage = "waiting" if delta.queued else "generating"
                        yield Status(
                            run_id=run.run_id,
                            seq=UNNUMBERED,
                            stage=stage,
                            queue_position=delta.queued or None,
                        )
                    if delta.text:
                        yield Token(run_id=run.run_id, seq=UNNUMBERED, text=delta.text)
                    if delta.finish_reason == "length":
                        run.finish = "length"
                    if delta.prompt_tokens is not None:
                        run.usage["prompt_tokens"] = delta.prompt_tokens
                    if delta.completion_tokens is not None:
                        run.usage["completion_tokens"] = delta.completion_tokens
        except LLMError as exc:
            yield run.fail(exc.code, str(exc), retryable=exc.retryable)
            return
        yield Usage(run_id=run.run_id, seq=UNNUMBERED, **run.usage)

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

    async def _record(self, run: RunState, *, begin: bool = False) -> None:
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
            moderation=run.moderation_counts(),
        )
        if begin:
            await asyncio.shield(asyncio.to_thread(self.runlog.begin, record))
            return
        try:
            await asyncio.shield(asyncio.to_thread(self.runlog.record, record))
        except Exception:  # a failed write must not break the answer stream
            log.exception("could not record run %s", run.run_id)
