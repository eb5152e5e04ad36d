"""The answer engine: one async stream of typed events per question.

retrieve (off the event loop) → ``sources`` → prompt → the LLM streams → ``token`` events, with
``citation`` events as soon as a marker closes → ``usage`` → ``done``. Closing the stream or
cancelling its task closes the LLM stream at once. An LLM failure gives ``error`` and then
``done`` with finish_reason "error", keeping the partial answer.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from streamrag.answer.citations import CitationScanner
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
from streamrag.kb import KnowledgeBase
from streamrag.llm.base import LLM, LLMError


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    """How many sources to give the model and how long it may answer."""

    top_k: int = 5
    max_tokens: int = 512
    temperature: float = 0.1


class AnswerEngine:
    """Answers questions over a knowledge base with an LLM, as a stream of events."""

    def __init__(self, kb: KnowledgeBase, llm: LLM, settings: AnswerSettings | None = None) -> None:
        self.kb = kb
        self.llm = llm
        self.settings = settings or AnswerSettings()

    async def run(
        self, question: str, *, session_id: str | None = None, run_id: str | None = None
    ) -> AsyncIterator[Event]:
        """The events of one answer, in order; see the module docstring."""
        run_id = run_id or uuid.uuid4().hex
        seq = itertools.count()
        started = time.perf_counter()

        def ms_since(moment: float) -> float:
            return round((time.perf_counter() - moment) * 1000, 2)

        yield RunStarted(
            run_id=run_id,
            seq=next(seq),
            session_id=session_id or uuid.uuid4().hex,
            trace_id=uuid.uuid4().hex,
            question=question,
        )
        yield Status(run_id=run_id, seq=next(seq), stage="retrieving")
        retrieve_started = time.perf_counter()
        hits = await asyncio.to_thread(self.kb.search, question, self.settings.top_k)
        sources = [
            Source(
                number=number,
                chunk_id=hit.chunk.chunk_id,
                doc_id=hit.chunk.doc_id,
                title=hit.chunk.title,
                source=hit.chunk.source,
                location=hit.chunk.location,
                score=round(hit.score, 6),
                text=hit.chunk.text,
            )
            for number, hit in enumerate(hits, start=1)
        ]
        timings = {"condense_ms": 0.0, "retrieve_ms": ms_since(retrieve_started)}
        yield Sources(run_id=run_id, seq=next(seq), sources=sources)
        yield Status(run_id=run_id, seq=next(seq), stage="generating")

        by_number = {source.number: source.chunk_id for source in sources}
        scanner = CitationScanner()
        answer: list[str] = []
        citations: list[CitedSource] = []
        invalid = 0
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        finish: FinishReason = "stop"
        messages = build_messages(question, sources)
        stream = self.llm.stream(
            messages, max_tokens=self.settings.max_tokens, temperature=self.settings.temperature
        )
        try:
            async with aclosing(stream) as deltas:
                async for delta in deltas:
                    if delta.text:
                        if not answer:
                            timings["ttft_ms"] = ms_since(started)
                        answer.append(delta.text)
                        yield Token(run_id=run_id, seq=next(seq), text=delta.text)
                        for marker in scanner.feed(delta.text):
                            chunk_id = by_number.get(marker.number)
                            if chunk_id is None:
                                invalid += 1
                                continue
                            cited = CitedSource(marker.number, chunk_id, marker.offset)
                            citations.append(cited)
                            yield Citation(
                                run_id=run_id,
                                seq=next(seq),
                                number=cited.number,
                                chunk_id=cited.chunk_id,
                                offset=cited.offset,
                            )
                    if delta.finish_reason == "length":
                        finish = "length"
                    if delta.prompt_tokens is not None:
                        usage["prompt_tokens"] = delta.prompt_tokens
                    if delta.completion_tokens is not None:
                        usage["completion_tokens"] = delta.completion_tokens
        except LLMError as exc:
            finish = "error"
            yield Error(
                run_id=run_id,
                seq=next(seq),
                code=exc.code,
                message=str(exc),
                retryable=exc.retryable,
            )
        if finish != "error":
            yield Usage(run_id=run_id, seq=next(seq), **usage)
        timings["total_ms"] = ms_since(started)
        yield Done(
            run_id=run_id,
            seq=next(seq),
            answer="".join(answer),
            citations=citations,
            finish_reason=finish,
            timings=timings,
            usage=usage,
            invalid_citations=invalid,
            sources=[source.chunk_id for source in sources],
        )
