"""Conversation memory and run records: the Memory and RunLog protocols and their records.

A *run* is one question answered (or not): its record is written when it starts (finish
reason ``running``), keeps its partial answer while it streams and ends as what ``done``
reported plus what was retrieved. A run left ``running`` by a process that died is ended as
``interrupted``. A *session* is the ordered runs that share a ``session_id``; its history (the
questions and answers of those runs) is what a follow-up question is condensed with. The
*run event log* keeps each run's events as they were streamed, so that a client can resume a
run that is no longer in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from streamrag.answer.events import CitedSource, Done, Event, ModerationCount


@dataclass(frozen=True, slots=True)
class Turn:
    """One exchange of a conversation: the question as asked and the answer given."""

    question: str
    answer: str = ""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """Everything recorded about one run."""

    run_id: str
    session_id: str
    kb: str
    question: str
    standalone_question: str
    retrieved: list[str]  # chunk ids, in source order
    answer: str
    citations: list[CitedSource]
    finish_reason: str
    timings: dict[str, float]
    usage: dict[str, int]
    model: str
    started_at: str
    error: dict[str, Any] | None = None
    invalid_citations: int = 0
    moderation: list[ModerationCount] = field(default_factory=list)  # rules that fired

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def finished(self) -> bool:
        return self.finish_reason != "running"

    def done_event(self, seq: int) -> Done:
        """The ``done`` event this record stands for (a run whose own was never sent)."""
        return Done(
            run_id=self.run_id,
            seq=seq,
            answer=self.answer,
            citations=self.citations,
            finish_reason=self.finish_reason,  # type: ignore[arg-type]
            timings=self.timings,
            usage=self.usage,
            invalid_citations=self.invalid_citations,
            standalone_question=self.standalone_question,
            sources=self.retrieved,
            moderation=self.moderation,
        )


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A conversation as a session list shows it."""

    session_id: str
    title: str
    runs: int
    created_at: str
    updated_at: str
    kbs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Memory(Protocol):
    """Where conversations live."""

    def history(self, session_id: str, limit: int = 50) -> list[Turn]: ...
    def sessions(self, limit: int = 100) -> list[SessionInfo]: ...
    def rename_session(self, session_id: str, title: str) -> None: ...
    def delete_session(self, session_id: str) -> int: ...


class RunLog(Protocol):
    """Where run records are written and read back."""

    owner: str  # the process that begins runs here: "<host>:<pid>"

    def begin(self, run: RunRecord) -> None: ...
    def record(self, run: RunRecord) -> None: ...
    def get_run(self, run_id: str) -> RunRecord | None: ...
    def runs(
        self, session_id: str | None = None, limit: int = 100, before: str | None = None
    ) -> Sequence[RunRecord]: ...
    def running(self) -> dict[str, str]: ...
    def interrupt(self, run_id: str, answer: str, code: str, message: str) -> bool: ...
    def interrupt_orphans(self) -> list[str]: ...


class RunEventLog(Protocol):
    """Where each run's streamed events are kept, in order."""

    def append_events(self, run_id: str, events: Sequence[Event], answer: str) -> None: ...
    def events(self, run_id: str, after: int = -1) -> list[Event]: ...


class RunHistory(RunLog, RunEventLog, Protocol):
    """Run records with their events: what a server keeps of its runs."""
