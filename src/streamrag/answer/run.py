"""What the engine's stages and its event transformers share: one run's state.

The stages (condense → retrieve → generate) make a run's events; post-processing is a chain of
transformers, each an async generator over the events before it (``cite`` in
:mod:`~streamrag.answer.citations` is the first). A transformer may pass an event on, hold it
back, change it or add events. The engine numbers each event as it leaves the chain, and the
answer, citations and first-token time the ``done`` event and the run record report are
those of the events that left it: what every surface sent.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from streamrag.answer.events import (
    Citation,
    CitedSource,
    Done,
    Error,
    Event,
    FinishReason,
    Moderation,
    ModerationCount,
    Source,
    Token,
)
from streamrag.history.base import Turn
from streamrag.history.sql import now
from streamrag.store import SearchFilter

UNNUMBERED = -1  # the seq of an event in the chain: the engine numbers it as it leaves


@dataclass(slots=True)
class RunState:
    """One run: what was asked, and what it has produced so far (it becomes the ``done``
    event and the run record). Stages and transformers read it and add to it."""

    run_id: str
    session_id: str
    question: str
    trace_id: str
    history: Sequence[Turn] | None = None  # None: the session's stored history
    top_k: int = 5
    where: SearchFilter | None = None
    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=now)
    standalone: str = ""
    sources: list[Source] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)  # the token texts sent
    citations: list[CitedSource] = field(default_factory=list)  # the citations sent
    invalid_citations: int = 0
    moderation: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # fired rules
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0}
    )
    timings: dict[str, float] = field(default_factory=dict)
    finish: FinishReason = "stop"
    error: Error | None = None
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def ms_since(self, moment: float) -> float:
        return round((time.perf_counter() - moment) * 1000, 2)

    def fail(self, code: str, message: str, *, retryable: bool) -> Error:
        """The ``error`` event that ends the run (its ``done`` follows)."""
        self.finish = "error"
        self.error = Error(
            run_id=self.run_id, seq=UNNUMBERED, code=code, message=message, retryable=retryable
        )
        return self.error

    def sent(self, event: Event) -> Event:
        """``event`` numbered as it leaves the chain, and kept in the answer if it is a
        token or a citation (a moderation: counted)."""
        event = replace(event, seq=next(self._seq))
        if isinstance(event, Token):
            if not self.answer:
                self.timings["ttft_ms"] = self.ms_since(self.started)
            self.answer.append(event.text)
        elif isinstance(event, Citation):
            self.citations.append(event.cited())
        elif isinstance(event, Moderation):
            self.moderation[(event.target, event.rule_class, event.action)] += 1
        return event

    def moderation_counts(self) -> list[ModerationCount]:
        return [ModerationCount(*key, count) for key, count in self.moderation.items()]

    def end(self) -> None:
        """Close the timings; an upstream that failed or was stopped before it reported
        usage has produced (at least) one token per delta streamed."""
        self.timings["total_ms"] = self.ms_since(self.started)
        if not self.usage["completion_tokens"]:
            self.usage["completion_tokens"] = len(self.answer)

    def done(self) -> Done:
        return Done(
            run_id=self.run_id,
            seq=next(self._seq),
            answer="".join(self.answer),
            citations=self.citations,
            finish_reason=self.finish,
            timings=self.timings,
            usage=self.usage,
            invalid_citations=self.invalid_citations,
            standalone_question=self.standalone,
            sources=[source.chunk_id for source in self.sources],
            moderation=self.moderation_counts(),
        )


EventTransformer = Callable[[AsyncIterator[Event], RunState], AsyncIterator[Event]]
